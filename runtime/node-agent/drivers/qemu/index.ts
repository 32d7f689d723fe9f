/** The `qemu` sandbox driver: microVMs with snapshots, warm starts and live migration. */
export { QemuDriver, commandScript } from "./driver";
export type { QemuDriverOptions, QemuImage, QemuImageSource } from "./driver";
export { qemuDriverConfigSchema, parseQemuDriverConfig } from "./config";
export type { QemuDriverConfig } from "./config";
export { imageStoreSource } from "./images";
export { ensureGuestKernel } from "./kernel";
export type { GuestKernel } from "./kernel";
export { ensureInitramfs } from "./initramfs";
