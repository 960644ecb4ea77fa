/* SPDX-License-Identifier: Apache-2.0 */
/* connect_loop: TCP connection latency to one or more targets, interleaved connection by
 * connection, for the services benchmark (bench/suite_services.py).
 *
 * Usage: connect_loop [-m echo|connect] [-c rst|fin] [-n N] [-w WARMUP] [-t SECONDS]
 *                     [-s SEED] LABEL=IP[,IP...]:PORT...
 *
 * Each round makes one connection to every target, in an order shuffled anew each round
 * (a seeded xorshift PRNG, -s SEED), so no target always follows the same neighbour --
 * the connection before warms or evicts caches for the next one -- and slow drift of the
 * machine hits all targets alike: the per-target medians of one run are paired
 * measurements.  A target with several addresses (a service's backends reached directly)
 * picks one at random per connection, as the load balancer does for the service
 * address (in turn, it would pair systematically with its neighbour's backend).
 *
 * One sample is the time, on CLOCK_MONOTONIC, from just before connect() until
 *   -m echo    (default) one byte sent and the same byte read back, or
 *   -m connect connect() returned (the SYN / SYN-ACK round trip);
 * close() follows outside the timed region.  socket() is created before the clock starts.
 * The close is abortive by default (-c rst: SO_LINGER 0, a RST), so that no TIME_WAIT
 * socket builds up at either end over a run: a new connection whose 4-tuple meets a
 * TIME_WAIT socket costs more, and a server port that several targets share (a service's
 * targetPort, also reached directly) collects more of them -- a drift of ~1 µs between
 * two identical paths over a few thousand connections per second.  -c fin closes
 * normally.
 * The first WARMUP rounds (default 10) are not recorded; the loop is bounded by N rounds
 * and by SECONDS of wall time (default 20).  A failed attempt is counted, never a sample.
 *
 * Output (stdout, one JSON object): {"mode": "echo", "close": "rst", "clock": "CLOCK_MONOTONIC",
 *   "rounds": R, "targets": [{"label": "vip", "addr": "10.96.0.10:80", "errors": 0,
 *   "samples_us": [41.234, ...]}, ...]}
 * Exit status 0, or 2 for bad arguments.  Pinning is the caller's (taskset).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 16

#define MAX_ADDRS 8

struct target {
	char label[64];
	char addr_text[MAX_ADDRS * 16 + 8];
	struct sockaddr_in addrs[MAX_ADDRS];
	int naddrs;
	double *samples;
	long count;
	long errors;
};

static unsigned long long rng_state = 88172645463325252ULL;

/* xorshift64: reproducible, and cheap enough to sit outside the timed region anyway */
static unsigned long long rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int parse_target(const char *arg, struct target *t)
{
	const char *eq = strchr(arg, '=');
	const char *colon = strrchr(arg, ':');
	char ips[MAX_ADDRS * 16 + 1], *ip, *save = NULL;
	size_t n;
	long port;

	if (!eq || !colon || colon < eq || (size_t)(eq - arg) >= sizeof(t->label))
		return -1;
	memcpy(t->label, arg, (size_t)(eq - arg));
	t->label[eq - arg] = 0;
	/* labels go into the JSON unescaped: letters, digits, '-' and '_' only */
	if (!t->label[0] || strspn(t->label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					     "0123456789-_") != strlen(t->label))
		return -1;
	n = (size_t)(colon - eq - 1);
	if (n == 0 || n >= sizeof(ips))
		return -1;
	memcpy(ips, eq + 1, n);
	ips[n] = 0;
	port = strtol(colon + 1, NULL, 10);
	if (port <= 0 || port > 65535)
		return -1;
	snprintf(t->addr_text, sizeof(t->addr_text), "%s:%ld", ips, port);
	t->naddrs = 0;
	for (ip = strtok_r(ips, ",", &save); ip; ip = strtok_r(NULL, ",", &save)) {
		struct sockaddr_in *a = &t->addrs[t->naddrs];

		if (t->naddrs == MAX_ADDRS)
			return -1;
		memset(a, 0, sizeof(*a));
		a->sin_family = AF_INET;
		a->sin_port = htons((unsigned short)port);
		if (inet_pton(AF_INET, ip, &a->sin_addr) != 1)
			return -1;
		t->naddrs++;
	}
	return t->naddrs ? 0 : -1;
}

/* One connection; returns the elapsed µs, or a negative value on failure. */
static double one(const struct sockaddr_in *addr, int echo, int rst)
{
	struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	int one_ = 1;
	char c = 'x';
	double start, elapsed = -1.0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1.0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof(one_));
	start = now_us();
	if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0) {
		if (!echo) {
			elapsed = now_us() - start;
		} else if (send(fd, &c, 1, 0) == 1) {
			char r = 0;

			if (recv(fd, &r, 1, 0) == 1 && r == c)
				elapsed = now_us() - start;
		}
	}
	if (rst)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	return elapsed;
}

int main(int argc, char **argv)
{
	struct target targets[MAX_TARGETS];
	long n = 1000, warmup = 10, rounds = 0;
	double seconds = 20.0, end;
	int echo = 1, rst = 1, k = 0, opt;

	int order[MAX_TARGETS];

	while ((opt = getopt(argc, argv, "m:n:w:t:s:c:")) != -1) {
		switch (opt) {
		case 'm':
			if (strcmp(optarg, "echo") == 0)
				echo = 1;
			else if (strcmp(optarg, "connect") == 0)
				echo = 0;
			else
				goto usage;
			break;
		case 'c':
			if (strcmp(optarg, "rst") == 0)
				rst = 1;
			else if (strcmp(optarg, "fin") == 0)
				rst = 0;
			else
				goto usage;
			break;
		case 'n':
			n = strtol(optarg, NULL, 10);
			break;
		case 'w':
			warmup = strtol(optarg, NULL, 10);
			break;
		case 't':
			seconds = strtod(optarg, NULL);
			break;
		case 's':
			rng_state ^= strtoull(optarg, NULL, 10) * 0x9E3779B97F4A7C15ULL;
			if (!rng_state)
				rng_state = 1;
			break;
		default:
			goto usage;
		}
	}
	if (n <= 0 || warmup < 0 || seconds <= 0 || optind >= argc)
		goto usage;
	for (; optind < argc; optind++) {
		if (k == MAX_TARGETS || parse_target(argv[optind], &targets[k]) < 0) {
			fprintf(stderr, "connect_loop: bad target %s (LABEL=IP[,IP...]:PORT, at most %d)\n",
				argv[optind], MAX_TARGETS);
			return 2;
		}
		targets[k].samples = calloc((size_t)n, sizeof(double));
		targets[k].count = targets[k].errors = 0;
		if (!targets[k].samples)
			return 1;
		k++;
	}

	end = now_us() + seconds * 1e6;
	for (long r = 0; r < n + warmup && now_us() < end; r++) {
		for (int j = 0; j < k; j++)
			order[j] = j;
		for (int j = k - 1; j > 0; j--) { /* Fisher-Yates */
			int i = (int)(rng() % (unsigned long long)(j + 1)), tmp = order[j];

			order[j] = order[i];
			order[i] = tmp;
		}
		for (int j = 0; j < k; j++) {
			struct target *t = &targets[order[j]];
			double us = one(&t->addrs[rng() % (unsigned long long)t->naddrs], echo, rst);

			if (r < warmup)
				continue;
			if (us < 0)
				t->errors++;
			else
				t->samples[t->count++] = us;
		}
		if (r >= warmup)
			rounds++;
	}

	printf("{\"mode\": \"%s\", \"close\": \"%s\", \"clock\": \"CLOCK_MONOTONIC\", "
	       "\"rounds\": %ld, \"targets\": [",
	       echo ? "echo" : "connect", rst ? "rst" : "fin", rounds);
	for (int j = 0; j < k; j++) {
		const struct target *t = &targets[j];

		printf("%s{\"label\": \"%s\", \"addr\": \"%s\", \"errors\": %ld, \"samples_us\": [",
		       j ? ", " : "", t->label, t->addr_text, t->errors);
		for (long i = 0; i < t->count; i++)
			printf("%s%.3f", i ? ", " : "", t->samples[i]);
		printf("]}");
	}
	printf("]}\n");
	return 0;

usage:
	fprintf(stderr, "usage: connect_loop [-m echo|connect] [-c rst|fin] [-n N] [-w WARMUP] [-t SECONDS] "
			"[-s SEED] "
			"LABEL=IP[,IP...]:PORT...\n");
	return 2;
}
