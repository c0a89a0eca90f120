/* bench/c-relay.c: the least a TCP forwarder can do, as a reference for bench/forward.
 *
 * Two threads per connection, one per direction, each a blocking read()/write() loop
 * over a 256 KiB buffer; shutdown(SHUT_WR) on EOF. No event loop, no limits, no
 * logging: not a tool, only a floor for "how fast can bulk data cross this machine's
 * cores through any user-space relay". Usage: c-relay LISTEN_PORT TARGET_PORT (both on
 * 127.0.0.1). Built by bench/forward with gcc.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (256 * 1024)

struct dir {
    int src, dst;
};

static int target_port;

static void *pump(void *arg) {
    struct dir *d = arg;
    char *buf = malloc(BUF);
    ssize_t n;
    while (buf && (n = read(d->src, buf, BUF)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(d->dst, buf + off, (size_t)(n - off));
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    shutdown(d->dst, SHUT_WR);
    free(buf);
    return NULL;
}

static void *relay(void *arg) {
    int client = (int)(long)arg, one = 1;
    int upstream = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(target_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(upstream, (struct sockaddr *)&a, sizeof a) == 0) {
        struct dir up = {client, upstream}, down = {upstream, client};
        pthread_t t;
        pthread_create(&t, NULL, pump, &down);
        pump(&up);
        pthread_join(t, NULL);
    }
    close(client);
    close(upstream);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: c-relay LISTEN_PORT TARGET_PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    target_port = atoi(argv[2]);
    int one = 1, listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&a, sizeof a) || listen(listener, 1024)) {
        perror("c-relay");
        return 1;
    }
    pthread_attr_t detached;
    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int client = accept(listener, NULL, NULL);
        pthread_t t;
        if (client >= 0 && pthread_create(&t, &detached, relay, (void *)(long)client))
            close(client);
    }
}
