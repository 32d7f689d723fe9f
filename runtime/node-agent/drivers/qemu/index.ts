/** The `qemu` sandbox driver: microVMs with snapshots, warm starts and live migration. */
export { QemuDriver, commandScript } from "./driver";
export type { QemuDriverOptions, QemuImage, QemuImageSource } from "./driver";
export { ensureGuestKernel } from "./kernel";
export type { GuestKernel } from "./kernel";
export { ensureInitramfs } from "./initramfs";
