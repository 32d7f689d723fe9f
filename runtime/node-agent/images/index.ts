export { ImageStore, defaultImageCacheDir, preparedImageKey } from "./store";
export type { PreparedImage, ImageStoreOptions } from "./store";
export { ImageError } from "./errors";
export type { ImageErrorCode } from "./errors";
export { parseImageReference } from "./reference";
export type { ImageReference, LayoutReference, RegistryReference } from "./reference";
export type { ImageRuntimeConfig } from "./oci";
export type { RegistryCredentials, RegistryClientOptions } from "./registry";
