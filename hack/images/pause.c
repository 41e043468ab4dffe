/*
 * pause: the sandbox ("infra") process of a Kubernetes pod, for the
 * registry.k8s.io/pause:3.10 image that hack/images/build.sh makes.
 *
 * It holds the pod's namespaces open and does nothing else: it sleeps until
 * SIGINT or SIGTERM (then exits 0), and reaps any child that is reparented
 * to it (as PID 1 of a shared PID namespace it inherits orphans). It takes no
 * arguments except -v (print the version). Built static: the image has no
 * other file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAUSE_VERSION "3.10-storefront"

/* Never runs (the signals are blocked and taken with sigwaitinfo); it is
 * installed because PID 1 of a PID namespace only gets the signals it has a
 * handler for. */
static void unused_handler(int sig)
{
	(void)sig;
}

int main(int argc, char **argv)
{
	sigset_t wanted;
	siginfo_t info;
	int sig;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		printf("pause %s\n", PAUSE_VERSION);
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "usage: pause [-v]\n");
		return 2;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not PID 1, orphans are not reparented to me\n");

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = unused_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0 ||
	    sigaction(SIGCHLD, &sa, NULL) != 0) {
		perror("pause: sigaction");
		return 1;
	}

	/* Take the signals synchronously: block them, then wait for them. */
	sigemptyset(&wanted);
	sigaddset(&wanted, SIGINT);
	sigaddset(&wanted, SIGTERM);
	sigaddset(&wanted, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &wanted, NULL) != 0) {
		perror("pause: sigprocmask");
		return 1;
	}

	for (;;) {
		sig = sigwaitinfo(&wanted, &info);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			perror("pause: sigwaitinfo");
			return 1;
		}
		if (sig == SIGCHLD) {
			/* One SIGCHLD may stand for several children: reap them all. */
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;
			continue;
		}
		fprintf(stderr, "pause: got %s, exiting\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
		return 0;
	}
}
