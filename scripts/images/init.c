/*
 * The testbed's PID 1, compiled static (gcc -static) into the pause image and every image
 * whose main process is not itself a safe PID 1.
 *
 *   init            pause: sleep in pause() until SIGINT/SIGTERM (exit 0), reaping any child
 *                   re-parented to us (SIGCHLD) -- what a pod sandbox's pause container does.
 *   init CMD ARGS   run CMD as our child, forward SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2
 *                   to it, reap every zombie, and exit with CMD's status (128+n if killed by n).
 *
 * As PID 1 the kernel drops signals that have no handler, so a server like busybox httpd would
 * ignore the kubelet's SIGTERM; this program installs handlers and passes them on.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* One bit per signal: two signals may arrive during one sigsuspend(). */
static volatile sig_atomic_t pending = 0;

static void note(int sig) { pending |= 1 << sig; }

static void reap_all(pid_t child, int *status, int *exited) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    if (pid == child) {
      *status = st;
      *exited = 1;
    }
  }
}

int main(int argc, char **argv) {
  static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD};
  struct sigaction action;
  sigset_t all, old;
  memset(&action, 0, sizeof action);
  action.sa_handler = note;
  sigemptyset(&action.sa_mask);
  /* Block the signals while checking for them, so none arrives between the check and the wait. */
  sigemptyset(&all);
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) {
    sigaction(forwarded[i], &action, NULL);
    sigaddset(&all, forwarded[i]);
  }
  sigprocmask(SIG_BLOCK, &all, &old);

  pid_t child = -1;
  if (argc > 1) {
    child = fork();
    if (child < 0) {
      perror("init: fork");
      return 1;
    }
    if (child == 0) {
      sigprocmask(SIG_SETMASK, &old, NULL);
      for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        signal(forwarded[i], SIG_DFL);
      execvp(argv[1], argv + 1);
      fprintf(stderr, "init: cannot run %s: %s\n", argv[1], strerror(errno));
      _exit(127);
    }
  }

  int status = 0, exited = 0;
  for (;;) {
    sigsuspend(&old);
    int got = pending;
    pending = 0;
    if (got & (1 << SIGCHLD)) reap_all(child, &status, &exited);
    if (child < 0) {
      if (got & ((1 << SIGTERM) | (1 << SIGINT))) return 0;
      continue;
    }
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
      if (forwarded[i] != SIGCHLD && (got & (1 << forwarded[i]))) kill(child, forwarded[i]);
    if (exited) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return 128 + WTERMSIG(status);
    }
  }
}
