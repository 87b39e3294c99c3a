/* A scriptable NFS client over libnfs, for the NFS export tests (tests/nfs_export.rs).
 *
 *   client SERVER EXPORT VERSION UID GID
 *
 * reads one command per line on stdin and answers one line on stdout, "ok ..." or
 * "err <libnfs message>". Open files stay open across commands, so a test can hold an NFS file
 * handle while the server side restarts, and use it afterwards:
 *
 *   open K PATH        open PATH read-write as slot K (0-15)
 *   read K LEN         read LEN bytes at offset 0 of slot K: "ok <bytes as text>"
 *   write K OFF TEXT   write TEXT at OFF through slot K
 *   put PATH SIZE      create PATH and write SIZE bytes ('x') in 2 KiB chunks: "ok SIZE" or
 *                      "err <message> after <bytes written>"
 *   cat PATH           whole file as text (up to 1 MiB)
 *   stat PATH          "ok uid gid size ino"
 *   fstat K            the same for slot K (a GETATTR on the held handle)
 *   df PATH            "ok frsize blocks bfree bavail files ffree"
 *   rename A B | unlink PATH | mkdir PATH
 *
 * 2 KiB chunks: libnfs 4.0 fails to encode NFSv4 WRITEs over ~4 KiB.
 */
#include <sys/time.h> /* libnfs.h needs struct timeval */
#include <fcntl.h>
#include <inttypes.h>
#include <nfsc/libnfs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static struct nfs_context *nfs;
static struct nfsfh *slots[16];

/* libnfs returns -errno; its message text is not always filled in (v3 reads). */
static void fail_rc(int rc) { printf("err errno=%d %s\n", rc < 0 ? -rc : 0, nfs_get_error(nfs)); }
static void fail(void) { fail_rc(0); }

static int slot(const char *s) {
    int k = atoi(s);
    return (k >= 0 && k < 16) ? k : 0;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: client SERVER EXPORT VERSION UID GID\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    nfs = nfs_init_context();
    if (nfs == NULL) {
        fprintf(stderr, "nfs_init_context failed\n");
        return 1;
    }
    nfs_set_version(nfs, atoi(argv[3]));
    nfs_set_uid(nfs, atoi(argv[4]));
    nfs_set_gid(nfs, atoi(argv[5]));
    nfs_set_autoreconnect(nfs, -1);
    nfs_set_timeout(nfs, 20000);
    if (nfs_mount(nfs, argv[1], argv[2]) != 0) {
        printf("err mount: %s\n", nfs_get_error(nfs));
        return 1;
    }
    printf("ok mounted\n");

    static char line[8192], buf[1 << 20];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        char *cmd = strtok(line, " ");
        char *a = strtok(NULL, " ");
        char *b = strtok(NULL, "");
        if (cmd == NULL) continue;
        if (!strcmp(cmd, "open") && a && b) {
            int k = slot(a);
            if (nfs_open(nfs, b, O_RDWR, &slots[k]) != 0) fail();
            else printf("ok\n");
        } else if (!strcmp(cmd, "read") && a && b) {
            uint64_t len = strtoull(b, NULL, 10);
            if (len >= sizeof buf) len = sizeof buf - 1;
            int n = nfs_pread(nfs, slots[slot(a)], 0, len, buf);
            if (n < 0) fail_rc(n);
            else printf("ok %.*s\n", n, buf);
        } else if (!strcmp(cmd, "write") && a && b) {
            char *text = strchr(b, ' ');
            if (text == NULL) { printf("err usage\n"); continue; }
            *text++ = 0;
            int n = nfs_pwrite(nfs, slots[slot(a)], strtoull(b, NULL, 10), strlen(text), text);
            if (n < 0) fail_rc(n);
            else printf("ok %d\n", n);
        } else if (!strcmp(cmd, "put") && a && b) {
            uint64_t size = strtoull(b, NULL, 10), done = 0;
            struct nfsfh *fh;
            if (nfs_open2(nfs, a, O_CREAT | O_RDWR | O_TRUNC, 0644, &fh) != 0) { fail(); continue; }
            memset(buf, 'x', 2048);
            int err = 0;
            while (done < size) {
                uint64_t n = size - done < 2048 ? size - done : 2048;
                int w = nfs_pwrite(nfs, fh, done, n, buf);
                if (w <= 0) { err = 1; break; }
                done += (uint64_t)w;
            }
            if (err) printf("err %s after %" PRIu64 "\n", nfs_get_error(nfs), done);
            else printf("ok %" PRIu64 "\n", done);
            nfs_close(nfs, fh);
        } else if (!strcmp(cmd, "cat") && a) {
            struct nfsfh *fh;
            if (nfs_open(nfs, a, O_RDONLY, &fh) != 0) { fail(); continue; }
            int n = nfs_pread(nfs, fh, 0, sizeof buf - 1, buf);
            if (n < 0) fail();
            else printf("ok %.*s\n", n, buf);
            nfs_close(nfs, fh);
        } else if (!strcmp(cmd, "stat") && a) {
            struct nfs_stat_64 st;
            if (nfs_stat64(nfs, a, &st) != 0) fail();
            else printf("ok %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", st.nfs_uid, st.nfs_gid, st.nfs_size,
                        st.nfs_ino);
        } else if (!strcmp(cmd, "fstat") && a) {
            struct nfs_stat_64 st;
            int rc = nfs_fstat64(nfs, slots[slot(a)], &st);
            if (rc != 0) fail_rc(rc);
            else printf("ok %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", st.nfs_uid, st.nfs_gid, st.nfs_size,
                        st.nfs_ino);
        } else if (!strcmp(cmd, "df") && a) {
            struct nfs_statvfs_64 sv;
            if (nfs_statvfs64(nfs, a, &sv) != 0) fail();
            else printf("ok %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", sv.f_frsize,
                        sv.f_blocks, sv.f_bfree, sv.f_bavail, sv.f_files, sv.f_ffree);
        } else if (!strcmp(cmd, "rename") && a && b) {
            if (nfs_rename(nfs, a, b) != 0) fail();
            else printf("ok\n");
        } else if (!strcmp(cmd, "unlink") && a) {
            if (nfs_unlink(nfs, a) != 0) fail();
            else printf("ok\n");
        } else if (!strcmp(cmd, "mkdir") && a) {
            if (nfs_mkdir(nfs, a) != 0) fail();
            else printf("ok\n");
        } else {
            printf("err unknown command\n");
        }
    }
    return 0;
}
