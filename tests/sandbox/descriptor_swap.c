// A descriptor swapped between the tracer's look and the kernel's: another thread dup2s a
// netlink socket and then a unix socket over number N, over and over, while the main thread
// connects (or sends) N to a host daemon's socket file. Bare, the call lands whenever N is
// the unix socket. Usage: descriptor_swap connect|sendto|sendmsg PATH ATTEMPTS
#define _GNU_SOURCE
#include <linux/netlink.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sched.h>
#include <sys/un.h>
#include <unistd.h>

#define N 50
static int netlink, current = -1, rounds;
static volatile int stop;

static void *swap(void *unused) {
    (void)unused;
    while (!stop) {
        int unix_socket = __atomic_load_n(&current, __ATOMIC_SEQ_CST);
        if (unix_socket < 0) continue;
        dup2(netlink, N);
        dup2(unix_socket, N);
        __atomic_add_fetch(&rounds, 1, __ATOMIC_SEQ_CST);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    const char *how = argv[1];
    int attempts = atoi(argv[3]), stream = !strcmp(how, "connect");
    struct sockaddr_un daemon = {.sun_family = AF_UNIX};
    strncpy(daemon.sun_path, argv[2], sizeof daemon.sun_path - 1);
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + strlen(daemon.sun_path) + 1;
    netlink = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    pthread_t thread;
    pthread_create(&thread, 0, swap, 0);
    char byte = 'x';
    struct iovec iov = {&byte, 1};
    struct msghdr header = {.msg_name = &daemon, .msg_namelen = len, .msg_iov = &iov,
                            .msg_iovlen = 1};
    int landed = 0;
    for (int i = 0; i < attempts; i++) {
        int unix_socket = socket(AF_UNIX, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK, 0);
        int seen = __atomic_load_n(&rounds, __ATOMIC_SEQ_CST);
        __atomic_store_n(&current, unix_socket, __ATOMIC_SEQ_CST);
        // the swapper has put this socket at N at least once (even on one busy CPU), and
        // goes on swapping during the call
        while (__atomic_load_n(&rounds, __ATOMIC_SEQ_CST) < seen + 2) sched_yield();
        int r;
        if (stream) r = connect(N, (void *)&daemon, len);
        else if (!strcmp(how, "sendto")) r = sendto(N, &byte, 1, 0, (void *)&daemon, len);
        else r = sendmsg(N, &header, 0);
        __atomic_store_n(&current, -1, __ATOMIC_SEQ_CST);
        usleep(10);  // the swapper lets go of this socket before it is closed
        landed += r >= 0;
        close(unix_socket);
    }
    stop = 1;
    pthread_join(thread, 0);
    printf("{\"landed\": %d}\n", landed);
    return 0;
}
