/** The one error the image store throws: a stable code and a message that names the problem. */
export type ImageErrorCode =
  "bad_reference" | "not_found" | "unsupported" | "digest_mismatch" | "registry" | "unpack";

/** An image could not be resolved, fetched or unpacked; `message` says why and what to do. */
export class ImageError extends Error {
  constructor(
    readonly code: ImageErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "ImageError";
  }
}
