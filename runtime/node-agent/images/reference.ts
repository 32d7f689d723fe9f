/**
 * Image references a sandbox may name: an OCI image layout directory (`oci:/path[:tag]`) or a
 * registry reference (`host[:port]/repo[:tag]` or `host[:port]/repo@sha256:…`).
 */
import { REGISTRY_HOST_PATTERN } from "../../../contract/names";
import { ImageError } from "./errors";

/** An image in an OCI image layout directory on this host. */
export interface LayoutReference {
  readonly kind: "layout";
  /** Absolute path of the layout directory (the one holding `index.json` and `blobs/`). */
  readonly path: string;
  /** Tag (`org.opencontainers.image.ref.name`); absent = the layout's only image. */
  readonly tag?: string;
}

/** An image in a registry that speaks the OCI distribution API. */
export interface RegistryReference {
  readonly kind: "registry";
  /** host or host:port. */
  readonly registry: string;
  readonly repository: string;
  /** A tag or a `sha256:…` digest. */
  readonly reference: string;
}

export type ImageReference = LayoutReference | RegistryReference;

const digestPattern = /^sha256:[a-f0-9]{64}$/;
const tagPattern = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const repositoryComponent = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

/** Parses an image reference, or throws an {@link ImageError} that says what is wrong and the fix. */
export function parseImageReference(image: string): ImageReference {
  if (image.startsWith("oci:")) return parseLayoutReference(image);
  const bad = (why: string): ImageError =>
    new ImageError(
      "bad_reference",
      `image "${image}": ${why}; use "oci:/abs/layout/dir[:tag]" or "host[:port]/repo:tag" (or "@sha256:<64 hex>")`,
    );
  const slash = image.indexOf("/");
  if (slash <= 0) throw bad("a registry reference must start with the registry host");
  const registry = image.slice(0, slash);
  if (
    !REGISTRY_HOST_PATTERN.test(registry) ||
    !(registry.includes(".") || registry.includes(":") || registry === "localhost")
  ) {
    throw bad(
      `"${registry}" is not a registry host (there is no default registry: name it, e.g. 127.0.0.1:5000)`,
    );
  }
  const port = /:([0-9]+)$/.exec(registry)?.[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
    throw bad(`port ${port} of registry "${registry}" is not 1-65535`);
  }
  let rest = image.slice(slash + 1);
  let reference = "latest";
  const at = rest.indexOf("@");
  if (at >= 0) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digestPattern.test(reference))
      throw bad(`digest "${reference}" is not sha256:<64 lowercase hex>`);
  } else {
    const colon = rest.lastIndexOf(":");
    if (colon >= 0) {
      reference = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
      if (!tagPattern.test(reference))
        throw bad(`tag "${reference}" has characters a tag may not have`);
    }
  }
  if (rest === "" || !rest.split("/").every((c) => repositoryComponent.test(c))) {
    throw bad(`repository "${rest}" must be lowercase path components like "team/app"`);
  }
  return { kind: "registry", registry, repository: rest, reference };
}

function parseLayoutReference(image: string): LayoutReference {
  const body = image.slice("oci:".length);
  // A tag follows the last ':' only when that ':' comes after the last '/' (paths may hold ':').
  const colon = body.lastIndexOf(":");
  const hasTag = colon > body.lastIndexOf("/");
  const path = hasTag ? body.slice(0, colon) : body;
  const tag = hasTag ? body.slice(colon + 1) : undefined;
  if (!path.startsWith("/")) {
    throw new ImageError(
      "bad_reference",
      `image "${image}": an OCI layout path must be absolute, e.g. "oci:/var/images/busybox:latest"`,
    );
  }
  if (tag !== undefined && !tagPattern.test(tag)) {
    throw new ImageError(
      "bad_reference",
      `image "${image}": tag "${tag}" has characters a tag may not have`,
    );
  }
  return tag === undefined ? { kind: "layout", path } : { kind: "layout", path, tag };
}
