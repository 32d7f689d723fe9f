/** The /proc/meminfo a process sandbox sees (bound over the host's by bwrap). */

/** A /proc/meminfo whose totals are the sandbox's memory limit (what `free` and runtimes read). */
export function meminfoFor(memoryMiB: number): string {
  const kb = memoryMiB * 1024;
  const line = (name: string, value: number): string =>
    `${`${name}:`.padEnd(16)}${String(value).padStart(8)} kB`;
  return `${[
    line("MemTotal", kb),
    line("MemFree", kb),
    line("MemAvailable", kb),
    line("Buffers", 0),
    line("Cached", 0),
    line("SwapCached", 0),
    line("SwapTotal", 0),
    line("SwapFree", 0),
  ].join("\n")}\n`;
}
