/* LD_PRELOAD shim for power-loss and disk-full tests: an undo journal of writes not yet fsync-ed.
 *
 * For every file under $KIOSK_PL_ROOT, each write/pwrite/ftruncate first appends to
 * $KIOSK_PL_JOURNAL what it is about to overwrite (offset, old size, old bytes); fsync/fdatasync
 * marks the file durable; rename and unlink are logged so pending undo records follow the file.
 * After the process is killed, fuzz/powerloss.py replays the journal and undoes every write that
 * was not fsync-ed before the kill: the files are left as a power cut would leave them, if the
 * disk kept nothing but what was synced. Directory entries (create, rename, unlink) are treated
 * as durable when made; a new file's unsynced contents are dropped (it is left empty).
 * With $KIOSK_PL_ENOSPC_AFTER set, writes under the root fail with ENOSPC once that many bytes
 * have been written there (a disk that fills up). With $KIOSK_PL_CUT_AT_WRITE=n the process
 * kills itself (SIGKILL) right after its n-th write under the root: a power cut at a chosen write.
 * With $KIOSK_PL_CUT_AFTER_RENAME_TO=text it does so right after the first rename onto a path
 * containing that text (a cut just after a file was replaced).
 * Build: cc -shared -fPIC -O2 -o powerloss.so powerloss.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static int journal_fd = -1;
static const char *root = NULL;
static size_t root_len = 0;
static long long budget = -1;
static long long written = 0;
static long long cut_at = -1;
static long long writes = 0;
static const char *cut_rename = NULL;
static int ready = 0;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);

static void setup(void) {
    if (ready) return;
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_rename = dlsym(RTLD_NEXT, "rename");
    real_renameat = dlsym(RTLD_NEXT, "renameat");
    real_unlink = dlsym(RTLD_NEXT, "unlink");
    real_unlinkat = dlsym(RTLD_NEXT, "unlinkat");
    root = getenv("KIOSK_PL_ROOT");
    root_len = root ? strlen(root) : 0;
    const char *limit = getenv("KIOSK_PL_ENOSPC_AFTER");
    budget = limit ? atoll(limit) : -1;
    const char *cut = getenv("KIOSK_PL_CUT_AT_WRITE");
    cut_at = cut ? atoll(cut) : -1;
    cut_rename = getenv("KIOSK_PL_CUT_AFTER_RENAME_TO");
    const char *journal = getenv("KIOSK_PL_JOURNAL");
    if (journal) journal_fd = open(journal, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ready = 1;
}

static int fd_path(int fd, char *out, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, size - 1);
    if (n < 0) return 0;
    out[n] = 0;
    return root_len && strncmp(out, root, root_len) == 0;
}

static int tracked_name(const char *path) {
    return root_len && path && strncmp(path, root, root_len) == 0;
}

static void put(const void *data, size_t size) {
    const char *p = data;
    while (size > 0) {
        ssize_t n = real_write(journal_fd, p, size);
        if (n <= 0) { if (errno == EINTR) continue; return; }
        p += n; size -= (size_t)n;
    }
}

static void put_path(const char *path) {
    uint32_t len = (uint32_t)strlen(path);
    put(&len, 4);
    put(path, len);
}

/* Record what [offset, offset+count) of the file holds now, and its size. */
static void record_undo(char kind, int fd, const char *path, uint64_t offset, uint64_t count) {
    struct stat st;
    if (fstat(fd, &st) != 0 || journal_fd < 0) return;
    uint64_t old_size = (uint64_t)st.st_size;
    uint64_t end = offset + count < old_size ? offset + count : old_size;
    uint32_t old_len = offset < end ? (uint32_t)(end - offset) : 0;
    char *old = old_len ? malloc(old_len) : NULL;
    if (old_len && (!old || pread(fd, old, old_len, (off_t)offset) != (ssize_t)old_len)) old_len = 0;
    put(&kind, 1);
    put_path(path);
    put(&offset, 8);
    put(&old_size, 8);
    put(&old_len, 4);
    if (old_len) put(old, old_len);
    free(old);
}

static void record_name(char kind, const char *path) {
    if (journal_fd < 0) return;
    put(&kind, 1);
    put_path(path);
}

/* After a write under the root: the chosen power cut, if this is the write it falls on. */
static void maybe_cut(void) {
    if (cut_at > 0 && ++writes == cut_at) kill(getpid(), SIGKILL);
}

static int over_budget(size_t count) {
    if (budget < 0) return 0;
    if (written + (long long)count > budget) { errno = ENOSPC; return 1; }
    written += (long long)count;
    return 0;
}

static ssize_t tracked_pwrite(ssize_t (*real)(int, const void *, size_t, off_t), int fd,
                              const void *buf, size_t count, off_t offset) {
    char path[4096];
    setup();
    if (!fd_path(fd, path, sizeof path)) return real(fd, buf, count, offset);
    pthread_mutex_lock(&lock);
    ssize_t result = -1;
    if (!over_budget(count)) {
        record_undo('W', fd, path, (uint64_t)offset, count);
        result = real(fd, buf, count, offset);
        maybe_cut();
    }
    pthread_mutex_unlock(&lock);
    return result;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    setup();
    return tracked_pwrite(real_pwrite, fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    setup();
    return tracked_pwrite(real_pwrite64, fd, buf, count, offset);
}

ssize_t write(int fd, const void *buf, size_t count) {
    char path[4096];
    setup();
    if (fd == journal_fd || !fd_path(fd, path, sizeof path)) return real_write(fd, buf, count);
    pthread_mutex_lock(&lock);
    ssize_t result = -1;
    if (!over_budget(count)) {
        int flags = fcntl(fd, F_GETFL);
        struct stat st;
        off_t offset = (flags & O_APPEND) && fstat(fd, &st) == 0 ? st.st_size : lseek(fd, 0, SEEK_CUR);
        if (offset >= 0) record_undo('W', fd, path, (uint64_t)offset, count);
        result = real_write(fd, buf, count);
        maybe_cut();
    }
    pthread_mutex_unlock(&lock);
    return result;
}

static int tracked_truncate(int (*real)(int, off_t), int fd, off_t length) {
    char path[4096];
    if (!fd_path(fd, path, sizeof path)) return real(fd, length);
    pthread_mutex_lock(&lock);
    struct stat st;
    uint64_t span = fstat(fd, &st) == 0 && st.st_size > length ? (uint64_t)(st.st_size - length) : 0;
    record_undo('W', fd, path, (uint64_t)length, span);
    int result = real(fd, length);
    pthread_mutex_unlock(&lock);
    return result;
}

int ftruncate(int fd, off_t length) { setup(); return tracked_truncate(real_ftruncate, fd, length); }
int ftruncate64(int fd, off_t length) { setup(); return tracked_truncate(real_ftruncate64, fd, length); }

static int tracked_sync(int (*real)(int), int fd) {
    char path[4096];
    int result = real(fd);
    if (result == 0 && fd_path(fd, path, sizeof path)) {
        pthread_mutex_lock(&lock);
        record_name('S', path);
        pthread_mutex_unlock(&lock);
    }
    return result;
}

int fsync(int fd) { setup(); return tracked_sync(real_fsync, fd); }
int fdatasync(int fd) { setup(); return tracked_sync(real_fdatasync, fd); }

static void record_rename(const char *old_path, const char *new_path) {
    pthread_mutex_lock(&lock);
    record_name('R', old_path);
    put_path(new_path);
    pthread_mutex_unlock(&lock);
    if (cut_rename && *cut_rename && strstr(new_path, cut_rename)) kill(getpid(), SIGKILL);
}

int rename(const char *old_path, const char *new_path) {
    setup();
    int result = real_rename(old_path, new_path);
    if (result == 0 && tracked_name(old_path)) record_rename(old_path, new_path);
    return result;
}

int renameat(int old_dir, const char *old_path, int new_dir, const char *new_path) {
    setup();
    int result = real_renameat(old_dir, old_path, new_dir, new_path);
    if (result == 0 && tracked_name(old_path) && tracked_name(new_path)) record_rename(old_path, new_path);
    return result;
}

int unlink(const char *path) {
    setup();
    int result = real_unlink(path);
    if (result == 0 && tracked_name(path)) {
        pthread_mutex_lock(&lock);
        record_name('U', path);
        pthread_mutex_unlock(&lock);
    }
    return result;
}

int unlinkat(int dir, const char *path, int flags) {
    setup();
    int result = real_unlinkat(dir, path, flags);
    if (result == 0 && tracked_name(path)) {
        pthread_mutex_lock(&lock);
        record_name('U', path);
        pthread_mutex_unlock(&lock);
    }
    return result;
}
