/** The `qemu` sandbox driver: microVMs with snapshots, warm starts and live migration. */
export { QemuDriver } from "./driver";
export type { QemuDriverOptions } from "./driver";
export { commandScript } from "./guest-command";
export type { QemuImage, QemuImageSource } from "./images";
export { qemuDriverConfigSchema, parseQemuDriverConfig } from "./config";
export type { QemuDriverConfig } from "./config";
export { imageStoreSource } from "./images";
export { ensureGuestKernel } from "./kernel";
export type { GuestKernel } from "./kernel";
export { ensureInitramfs } from "./initramfs";
