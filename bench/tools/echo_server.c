/* SPDX-License-Identifier: Apache-2.0 */
/* echo_server: the far end of connect_loop (bench/tools/connect_loop.c).
 *
 * Usage: echo_server PORT...
 *
 * Listens on 0.0.0.0:PORT for every PORT given and, one connection at a time: accept,
 * read up to 64 bytes, write them back, close.  A client that closes without sending
 * (connect_loop -m connect) is simply closed.  One thread and poll() over the listening
 * sockets: the same work per connection on every port, so two ports of one server are two
 * identical paths that differ only in what the network does to them (the services
 * benchmark exempts one port from the iptables service chain).
 * Runs until killed; pinning is the caller's (taskset).  Exit status 2 for bad arguments,
 * 1 when a port cannot be bound.
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_PORTS 8

int main(int argc, char **argv)
{
	struct pollfd fds[MAX_PORTS];
	int n = argc - 1;

	if (n < 1 || n > MAX_PORTS) {
		fprintf(stderr, "usage: echo_server PORT... (at most %d)\n", MAX_PORTS);
		return 2;
	}
	for (int i = 0; i < n; i++) {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
		long port = strtol(argv[i + 1], NULL, 10);
		int on = 1;
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (port <= 0 || port > 65535) {
			fprintf(stderr, "echo_server: bad port %s\n", argv[i + 1]);
			return 2;
		}
		a.sin_port = htons((unsigned short)port);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1024) < 0) {
			perror("echo_server: bind/listen");
			return 1;
		}
		fds[i].fd = fd;
		fds[i].events = POLLIN;
	}
	for (;;) {
		if (poll(fds, (nfds_t)n, -1) < 0)
			continue;
		for (int i = 0; i < n; i++) {
			struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
			char buf[64];
			ssize_t got;
			int c, on = 1;

			if (!(fds[i].revents & POLLIN))
				continue;
			c = accept(fds[i].fd, NULL, NULL);
			if (c < 0)
				continue;
			/* a client that never sends must not stall the others for long */
			setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
			got = recv(c, buf, sizeof(buf), 0);
			if (got > 0)
				(void)!send(c, buf, (size_t)got, MSG_NOSIGNAL);
			close(c);
		}
	}
}
