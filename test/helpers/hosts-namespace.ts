/**
 * Runs a TypeScript probe with its own /etc/hosts (bind-mounted in a new mount namespace), and
 * optionally inside a network namespace: real name resolution (getaddrinfo reads the file) for
 * names the tests make up, without touching the host's resolver.
 */
import { execFile } from "node:child_process";

/**
 * The probe's exit status and output. Asynchronous: the test process may itself serve what the
 * probe connects to.
 */
export function runWithHosts(
  hosts: string,
  script: string,
  options: { netns?: string; env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const inMountNs = [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    `mount --bind "$1" /etc/hosts && exec "$2" --import tsx "$3"`,
    "sh",
    hosts,
    process.execPath,
    script,
  ];
  const [command, ...args] =
    options.netns === undefined ? inMountNs : ["ip", "netns", "exec", options.netns, ...inMountNs];
  return new Promise((resolve) => {
    execFile(
      command!,
      args,
      { encoding: "utf8", env: { ...process.env, ...options.env }, timeout: options.timeoutMs },
      (error, stdout, stderr) => {
        const code = (error as { code?: unknown } | null)?.code;
        resolve({ status: error ? (typeof code === "number" ? code : null) : 0, stdout, stderr });
      },
    );
  });
}
