/*
 * Makes the syscalls that slip past per-syscall tracepoints, for node-agent/tests/bypass.rs.
 * No libc: built static by the test, so it runs in any container rootfs.
 *
 *   cc -static -nostdlib -fno-pie -no-pie -O2 -o bypass64 bypass.c
 *   cc -m32 -static -nostdlib -fno-pie -no-pie -O2 -o bypass32 bypass.c
 *
 * Usage: bypass PATH. Both builds make 32-bit syscalls with `int $0x80`: getpid (20) three
 * times, then open(PATH, O_WRONLY|O_CREAT|O_TRUNC, 0644) (5), which the open tracepoints never
 * see. From the 64-bit build these are `int 0x80` from 64-bit code; from the 32-bit build they
 * are an ordinary 32-bit program's syscalls. io_uring_setup(8, &params) is a 64-bit syscall
 * (425) from the 64-bit build and a 32-bit one (also 425) from the 32-bit build.
 * Prints "io_uring=<ret> getpid=<ret> open=<ret>" and exits through exit_group.
 */

#define O_WRONLY 01
#define O_CREAT 0100
#define O_TRUNC 01000

static long int80(long nr, long a, long b, long c) {
	long ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
	return ret;
}

#ifdef __x86_64__
static long sys64(long nr, long a, long b, long c) {
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}
#define IO_URING_SETUP(n, p) sys64(425, (n), (long)(p), 0)
#define WRITE(fd, b, n) sys64(1, (fd), (long)(b), (n))
#define EXIT_GROUP(c) sys64(231, (c), 0, 0)
/* The stack is above 4 GiB: a path for int 0x80 must be copied below (this non-PIE binary's
 * .bss is). */
__asm__(".globl _start\n_start:\n xor %rbp, %rbp\n mov %rsp, %rdi\n and $-16, %rsp\n"
	" call start_c\n hlt\n");
#else
#define IO_URING_SETUP(n, p) int80(425, (n), (long)(p), 0)
#define WRITE(fd, b, n) int80(4, (fd), (long)(b), (n))
#define EXIT_GROUP(c) int80(252, (c), 0, 0)
__asm__(".globl _start\n_start:\n xor %ebp, %ebp\n mov %esp, %eax\n and $-16, %esp\n"
	" sub $12, %esp\n push %eax\n call start_c\n hlt\n");
#endif

static char path[4096];
/* struct io_uring_params: 120 bytes, zeroed; the kernel writes it back. */
static unsigned long long params[15];
static char out[128];
static int len;

static void put(const char *s) {
	while (*s && len < (int)sizeof(out) - 1)
		out[len++] = *s++;
}

static void num(long v) {
	char d[24];
	int n = 0;
	unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
	if (v < 0)
		put("-");
	do {
		d[n++] = '0' + u % 10;
		u /= 10;
	} while (u);
	while (n--) {
		char c[2] = {d[n], 0};
		put(c);
	}
}

__attribute__((used)) void start_c(long *sp) {
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	if (argc < 2) {
		put("usage: bypass PATH\n");
		WRITE(2, out, len);
		EXIT_GROUP(2);
	}
	for (int i = 0; argv[1][i] && i < (int)sizeof(path) - 1; i++)
		path[i] = argv[1][i];

	long ring = IO_URING_SETUP(8, params);
	long pid = 0;
	for (int i = 0; i < 3; i++)
		pid = int80(20, 0, 0, 0);
	long fd = int80(5, (long)path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	put("io_uring=");
	num(ring);
	put(" getpid=");
	num(pid);
	put(" open=");
	num(fd);
	put("\n");
	WRITE(1, out, len);
	EXIT_GROUP(0);
}
