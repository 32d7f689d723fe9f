#!/.shardworks/busybox sh
# Shardworks guest agent: PID 1 of a qemu sandbox (packed into the initramfs as /init).
# Protocol on the serial console (ttyS0), one line per frame, each starting with the byte 0x1e so
# the host can tell frames from kernel messages:
#   guest -> host  \036R           ready: waiting for a command (snapshots are taken here)
#   host -> guest  \036C<base64>   a shell script (env exports + exec of the command), base64
#   guest -> host  \036O<line>     one line of the command's combined stdout/stderr
#   guest -> host  \036X<code>     the command's exit code
B=/.shardworks/busybox
$B mkdir -p /proc /sys /dev /tmp /.shardworks
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev 2>/dev/null
$B mount -t tmpfs tmpfs /tmp
exec </dev/ttyS0 >/dev/ttyS0 2>&1
# Raw: no echo of what the host sends, no \n -> \r\n, no 4 KiB canonical line limit.
$B stty raw -echo
R=$($B printf '\036')
while :; do
  $B printf '%sR\n' "$R"
  IFS= read -r line || continue
  case "$line" in
    "${R}C"*) ;;
    *) continue ;;
  esac
  echo "${line#??}" | $B base64 -d > /.shardworks/command 2>/dev/null || { $B printf '%sX127\n' "$R"; continue; }
  $B rm -f /.shardworks/out
  $B mkfifo /.shardworks/out
  ( while IFS= read -r l || [ -n "$l" ]; do $B printf '%sO%s\n' "$R" "$l"; done < /.shardworks/out ) &
  $B sh /.shardworks/command > /.shardworks/out 2>&1 < /dev/null
  rc=$?
  wait
  $B printf '%sX%d\n' "$R" "$rc"
done
