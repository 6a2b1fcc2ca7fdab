/*
 * tool_io.h -- file handling shared by the command-line tools in this folder (POSIX); header-only,
 * each tool is one translation unit and defines _XOPEN_SOURCE 700 (POSIX.1-2008 with XSI:
 * realpath) before any include.
 * Inputs are only read (a named FIFO nothing writes to is refused, not waited on); outputs are
 * written atomically (temporary file + rename), never over the input: a new file gets mode 0666
 * minus the umask, a replaced one keeps its mode, its group (when the user may give it) and, as
 * root, its owner; a symbolic link is written through (the file it names is replaced, the link
 * stays), and an output that is not a regular file (a device, a FIFO), a link that leads to no file (dangling: not written through, as
 * GNU cp refuses; a loop), an output the user may not write (read-only) or one in a directory the
 * user may not write is refused before any work (tool_check_output), as dc-keras's writer does.
 * A signal that ends the tool while it writes (SIGINT, SIGTERM, SIGHUP, SIGQUIT) removes the
 * temporary file first; a file-size limit (ulimit -f) is an error line (EFBIG), not a death by
 * SIGXFSZ. A descriptor 0-2 closed at start-up gets /dev/null first (tool_open_std_fds), so that
 * no file the tool opens takes its number.
 */
#ifndef DC_TOOL_IO_H
#define DC_TOOL_IO_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* First thing in main: a descriptor 0, 1 or 2 that is closed (`>&-`, `2>&-`, a daemon) gets
 * /dev/null, opened in the contrary mode as gnulib's stdopen does (stdin write-only, stdout and
 * stderr read-only), so that a write to stdout still fails with EBADF as on a closed descriptor
 * (tool_finish_stdout says the report was lost). Else the first file the tool opens (the input,
 * the output's temporary file) would get that number, and what is written to stdout or stderr
 * meanwhile (a report, a library's log line) would end up in it. */
static void tool_open_std_fds(void) {
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      int null = open("/dev/null", fd == 0 ? O_WRONLY : O_RDONLY); /* the lowest free number: fd */
      if (null > fd) {
        dup2(null, fd);
        close(null);
      }
    }
  }
}

/* errno-like code (outside errno's range) of tool_read_file for a named FIFO no process writes to. */
#define TOOL_ENOWRITER 0x10000

/* st_dev of an anonymous pipe (`<(cmd)`, /dev/fd/N): opening one never waits for a writer, so it is
 * read to its end as any input, told apart from a named FIFO (whose open would wait). */
static int tool_pipe_dev(dev_t* dev) {
  int p[2];
  struct stat st;
  if (pipe(p) != 0) return -1;
  int ok = fstat(p[0], &st) == 0;
  close(p[0]);
  close(p[1]);
  if (ok) *dev = st.st_dev;
  return ok ? 0 : -1;
}

/* Reads the whole file at path into a malloc'ed buffer (*data, *size); -1 (nothing allocated,
 * errno set) if it cannot be opened or read, or memory runs out.  The input is opened
 * non-blocking: a named FIFO that no process has open for writing is refused (errno
 * TOOL_ENOWRITER: reading it would wait forever; a writer already waiting in its open, e.g.
 * `cat m.tflite > FIFO &`, counts as one), as dc-keras refuses it; a directory (EISDIR) or a
 * device (ENODEV: /dev/zero would be read until memory runs out) too. */
static int tool_read_file(const char* path, uint8_t** data, size_t* size) {
  int fd = open(path, O_RDONLY | O_NONBLOCK);
  size_t cap = 1 << 16, len = 0;
  struct stat st;
  dev_t pipe_dev;
  if (fd < 0) return -1;
  const int unstated = fstat(fd, &st) != 0;
  if (unstated || S_ISDIR(st.st_mode) || S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    int err = unstated ? errno : S_ISDIR(st.st_mode) ? EISDIR : ENODEV;
    close(fd);
    errno = err;
    return -1;
  }
  uint8_t* buf = (uint8_t*)malloc(cap);
  if (!buf) {
    close(fd);
    errno = ENOMEM;
    return -1;
  }
  if (S_ISFIFO(st.st_mode)) {
    ssize_t r;
    do r = read(fd, buf, cap);
    while (r < 0 && errno == EINTR);
    if (r == 0 && tool_pipe_dev(&pipe_dev) == 0 && st.st_dev != pipe_dev) {
      free(buf);
      close(fd);
      errno = TOOL_ENOWRITER;
      return -1;
    }
    if (r > 0) len = (size_t)r; /* r < 0 (EAGAIN): a writer is there, nothing written yet */
  }
  (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  for (;;) {
    ssize_t r;
    if (len == cap) {
      uint8_t* bigger = cap <= SIZE_MAX / 2 ? (uint8_t*)realloc(buf, cap * 2) : NULL;
      if (!bigger) {
        free(buf);
        close(fd);
        errno = ENOMEM;
        return -1;
      }
      buf = bigger;
      cap *= 2;
    }
    do r = read(fd, buf + len, cap - len);
    while (r < 0 && errno == EINTR);
    if (r == 0) break;
    if (r < 0) {
      int err = errno;
      free(buf);
      close(fd);
      errno = err;
      return -1;
    }
    len += (size_t)r;
  }
  close(fd);
  *data = buf;
  *size = len;
  return 0;
}

/* The temporary file being written (tool_write_atomic): a signal that ends the tool (Ctrl-C,
 * kill, a closed terminal) removes it first (tool_on_signal), so that no OUT.tmp file is left. */
static char tool_tmp[8192];
static volatile sig_atomic_t tool_tmp_live = 0;
static const int tool_fatal_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

static void tool_on_signal(int sig) {
  if (tool_tmp_live) unlink(tool_tmp); /* async-signal-safe */
  signal(sig, SIG_DFL);
  raise(sig); /* the usual death by that signal (the shell's 128 + N exit status) */
}

/* Installs tool_on_signal for the signals that end the tool (not for one the caller ignores, as
 * nohup does), and ignores SIGXFSZ: a write beyond the file-size limit (ulimit -f) then fails with
 * EFBIG, reported as any write error, instead of killing the tool with the temporary file left. */
static void tool_handle_signals(void) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = tool_on_signal;
  for (size_t i = 0; i < sizeof tool_fatal_signals / sizeof tool_fatal_signals[0]; ++i) {
    if (sigaction(tool_fatal_signals[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) {
      sigaction(tool_fatal_signals[i], &sa, NULL);
    }
  }
  signal(SIGXFSZ, SIG_IGN);
}

/* Blocks (block 1) or unblocks the fatal signals: tool_tmp_live changes with the file's existence,
 * atomically for tool_on_signal. */
static void tool_block_signals(int block, sigset_t* saved) {
  sigset_t set;
  sigemptyset(&set);
  for (size_t i = 0; i < sizeof tool_fatal_signals / sizeof tool_fatal_signals[0]; ++i) {
    sigaddset(&set, tool_fatal_signals[i]);
  }
  if (block) {
    sigprocmask(SIG_BLOCK, &set, saved);
  } else {
    sigprocmask(SIG_SETMASK, saved, NULL);
  }
}

/* Creates the temporary file next to path, "DIR/.NAME.PID-N.tmp" (NAME cut to 200 bytes, so that
 * any name the file system allows for path works, as dc-keras's writer does), with mode 0666 (the
 * umask applies) and O_EXCL; its name in tool_tmp.  The fd, or -1 with errno set. */
static int tool_create_tmp(const char* path) {
  const char* slash = strrchr(path, '/');
  const char* name = slash ? slash + 1 : path;
  const int dir_len = slash ? (int)(slash - path + 1) : 0;
  size_t name_len = strlen(name);
  if (name_len > 200) name_len = 200;
  for (unsigned n = 0; n < 100; ++n) {
    int len = snprintf(tool_tmp, sizeof tool_tmp, "%.*s.%.*s.%ld-%u.tmp", dir_len, path,
                       (int)name_len, name, (long)getpid(), n);
    if (len < 0 || (size_t)len >= sizeof tool_tmp) {
      errno = ENAMETOOLONG;
      return -1;
    }
    sigset_t saved;
    tool_block_signals(1, &saved);
    int fd = open(tool_tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    tool_tmp_live = fd >= 0;
    int err = errno;
    tool_block_signals(0, &saved);
    if (fd >= 0 || err != EEXIST) {
      errno = err;
      return fd;
    }
  }
  errno = EEXIST;
  return -1;
}

/* Writes data to path through a temporary file next to it and rename: readers never see a
 * half-written file, and on failure (or a signal that ends the tool) an existing file at path is
 * left as it was and the temporary file is removed.  A new file gets mode 0666 & ~umask, an
 * existing one keeps its mode; a symbolic link is written through (its target is replaced).  -1
 * with errno set on failure. */
static int tool_write_atomic(const char* path, const uint8_t* data, size_t size) {
  struct stat st, lst;
  char* real = NULL;
  sigset_t saved;
  tool_handle_signals();
  if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
    real = realpath(path, NULL); /* NULL for a dangling link or a loop: not replaced by a file */
    if (!real) return -1;        /* errno: ENOENT, ELOOP (tool_check_output said it first) */
    path = real;
  }
  const int exists = stat(path, &st) == 0 && S_ISREG(st.st_mode);
  int fd = tool_create_tmp(path);
  int err = fd >= 0 ? 0 : errno; /* the first failure's */
  size_t done = 0;
  if (!err && exists) { /* the replaced file's owner (as root) and group (when ours to give), best
                          * effort as dc-keras's writer, then its mode (chown may clear set-id bits) */
    (void)!fchown(fd, geteuid() == 0 ? st.st_uid : (uid_t)-1, st.st_gid);
    if (fchmod(fd, st.st_mode & 07777) != 0) err = errno;
  }
  while (!err && done < size) {
    ssize_t w = write(fd, data + done, size - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) err = w < 0 ? errno : EIO;
    if (w > 0) done += (size_t)w;
  }
  if (fd >= 0 && fsync(fd) != 0 && !err) err = errno;
  if (fd >= 0 && close(fd) != 0 && !err) err = errno;
  tool_block_signals(1, &saved);
  if (!err && rename(tool_tmp, path) != 0) err = errno;
  if (err && fd >= 0) unlink(tool_tmp);
  tool_tmp_live = 0;
  tool_block_signals(0, &saved);
  if (!err) { /* the rename durable, as dc-keras's writer makes it */
    char* dir = strdup(path);
    char* slash = dir ? strrchr(dir, '/') : NULL;
    if (slash) slash[slash == dir ? 1 : 0] = '\0'; /* "/out": "/" */
    int dfd = dir ? open(slash ? dir : ".", O_RDONLY) : -1;
    if (dfd >= 0) {
      (void)fsync(dfd);
      close(dfd);
    }
    free(dir);
  }
  free(real);
  errno = err;
  return err ? -1 : 0;
}

/* What to do about errno `err` when reading the input (`what`: e.g. "packed .tflite", `kind`:
 * e.g. ".tflite") or writing the output (`what`: the directory written in, or "": as dc-keras
 * says). */
static const char* tool_io_fix(int err, int output, const char* what, const char* kind) {
  static char msg[8192 + 128];
  if (!output) {
    if (err == ENOENT || err == EISDIR) {
      if (err == ENOENT) snprintf(msg, sizeof msg, "check the path of the %s", what);
      if (err == EISDIR) snprintf(msg, sizeof msg, "give the path of a %s file", kind);
      return msg;
    }
    return err == EACCES   ? "the input must be readable by you"
           : err == ENOMEM ? "the input does not fit in memory"
                           : "check the input file";
  }
  if (err == ENOENT)
    return "its directory does not exist: create it first or choose another output path";
  if (err == ENOTDIR)
    return "a part of its directory is a file: choose an output path in an existing directory";
  if (err == EISDIR) return "give a file name for the output, e.g. DIR/out";
  if (err == EACCES || err == EPERM || err == EROFS) {
    if (!*what)
      return "its directory is not writable: choose an output path in a writable directory";
    snprintf(msg, sizeof msg,
             "the directory %s is not writable: choose an output path in a writable directory",
             what);
    return msg;
  }
  if (err == ENOSPC || err == EDQUOT) {
    return "free some space or choose an output path on another disk (nothing was written)";
  }
  if (err == EFBIG) {
    return "the output is larger than this process may write (ulimit -f) or the file system "
           "allows: raise the limit or choose an output path on another file system (nothing "
           "was written)";
  }
  if (err == ENAMETOOLONG) return "choose a shorter output path";
  return "choose another output path";
}

/* 1 if both paths exist and are the same file (same device and inode: also a hard link, a symlink
 * or another spelling of the path). */
static int tool_same_file(const char* a, const char* b) {
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The directory of the file `out` names (through a symbolic link: of its target) in dir[size]:
 * "." for a bare name, "/" for "/name". */
static void tool_output_dir(const char* out, char* dir, size_t size) {
  struct stat lst;
  char* real = lstat(out, &lst) == 0 && S_ISLNK(lst.st_mode) ? realpath(out, NULL) : NULL;
  const char* path = real ? real : out;
  const char* slash = strrchr(path, '/');
  if (!slash) {
    snprintf(dir, size, ".");
  } else {
    snprintf(dir, size, "%.*s", slash == path ? 1 : (int)(slash - path), path);
  }
  free(real);
}

/* `path` as a command a message suggests must show it, to be pasted into a POSIX shell (as
 * Python's shlex.quote and dc_keras._fileio.shell_path): as it is when every byte is one the
 * shell takes literally, else in single quotes (a ' as '"'"'); "./" before a leading '-', which
 * would be read as an option. */
static void tool_shell_arg(FILE* f, const char* path) {
  const char* safe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@%+=:,./-_";
  const char* lead = path[0] == '-' ? "./" : "";
  if (path[0] != '\0' && path[strspn(path, safe)] == '\0') {
    fprintf(f, "%s%s", lead, path);
    return;
  }
  fprintf(f, "'%s", lead);
  for (const char* c = path; *c; c++) {
    if (*c == '\'') {
      fputs("'\"'\"'", f);
    } else {
      fputc(*c, f);
    }
  }
  fputc('\'', f);
}

/* Checks the output path `out` before the work, not after it: 0 if it may be written (absent, or
 * a regular file the user may write that is not the input `in`, in a directory the user may
 * write), else 1 after one error line naming the problem and the fix.  A device or FIFO would be
 * replaced by a regular file (as root: `OUT=/dev/null`); a read-only file is refused as cp, gcc -o
 * and zip refuse it (root may write any file and replaces it, keeping its mode); a symbolic link
 * that leads to no file is refused as GNU cp refuses it ("not writing through dangling symlink":
 * the link usually outlived what it named, and the file would appear wherever it points), not
 * replaced by a file. */
static int tool_check_output(const char* tool, const char* in, const char* out) {
  struct stat st;
  char dir[8192];
  if (lstat(out, &st) == 0 && S_ISLNK(st.st_mode) && stat(out, &st) != 0) {
    int err = errno;
    char to[4096];
    ssize_t n = readlink(out, to, sizeof to - 1);
    to[n > 0 ? n : 0] = '\0';
    if (err == ELOOP) {
      fprintf(stderr,
              "%s: %s is a symbolic link loop (%s): remove or fix the link, or choose another "
              "output path\n",
              tool, out, strerror(ELOOP));
    } else {
      fprintf(stderr,
              "%s: %s is a symbolic link to %s, which does not exist: outputs are not written "
              "through a dangling link (as cp does not); create %s first, remove the link, or "
              "choose another output path\n",
              tool, out, to, to);
    }
    return 1;
  }
  if (tool_same_file(in, out)) {
    fprintf(stderr,
            "%s: the output %s is the same file as the input %s, which is never overwritten: "
            "choose a different output path\n",
            tool, out, in);
    return 1;
  }
  const int absent = stat(out, &st) != 0;
  if (!absent && S_ISDIR(st.st_mode)) {
    fprintf(stderr, "%s: cannot write %s: %s; %s\n", tool, out, strerror(EISDIR),
            tool_io_fix(EISDIR, 1, "", ""));
    return 1;
  }
  if (!absent && !S_ISREG(st.st_mode)) {
    fprintf(stderr, "%s: %s is %s, not a file: give the path of a file to write\n", tool, out,
            S_ISFIFO(st.st_mode)   ? "a FIFO"
            : S_ISSOCK(st.st_mode) ? "a socket"
                                   : "a device");
    return 1;
  }
  tool_output_dir(out, dir, sizeof dir);
  struct stat dst; /* the temporary file and the rename need a directory the user may write */
  int err = stat(dir, &dst) != 0            ? errno
            : !S_ISDIR(dst.st_mode)         ? ENOTDIR
            : access(dir, W_OK | X_OK) != 0 ? errno
                                            : 0;
  if (err) {
    fprintf(stderr, "%s: cannot write %s: %s; %s\n", tool, out, strerror(err),
            tool_io_fix(err, 1, dir, ""));
    return 1;
  }
  if (!absent && access(out, W_OK) != 0 && errno == EACCES) {
    fprintf(stderr, "%s: %s is read-only (mode %04o): make it writable (chmod u+w ", tool, out,
            (unsigned)(st.st_mode & 07777));
    tool_shell_arg(stderr, out);
    fputs(") or choose another output path; it was not changed\n", stderr);
    return 1;
  }
  return 0;
}

/* tool_write_atomic, and on failure one error line naming `path`, the cause and the fix: 0 / 1. */
static int tool_write_output(const char* tool, const char* path, const uint8_t* data, size_t size) {
  if (tool_write_atomic(path, data, size) == 0) return 0;
  int err = errno;
  char dir[8192];
  tool_output_dir(path, dir, sizeof dir);
  fprintf(stderr, "%s: cannot write %s: %s; %s\n", tool, path, strerror(err),
          tool_io_fix(err, 1, dir, ""));
  return 1;
}

/* At the end of a run that printed its report on stdout: 0, or 1 after one error line if the
 * report could not be written (stdout a full disk, a closed pipe's EIO, ...): a script reading
 * it must not take the silence for success.  The outputs written before stay written. */
static int tool_finish_stdout(const char* tool) {
  if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
  int err = errno ? errno : EIO;
  fprintf(stderr, "%s: cannot write the report to standard output: %s (the outputs were written)\n",
          tool, strerror(err));
  return 1;
}

static int tool_is_help(const char* arg) {
  return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* The path arguments argv[1..argc-1], before any work: 0, or 2 (a usage error) after one line
 * for an empty one (a shell variable that was not set: the output would be decoded, then not
 * written) or "-" (no standard input/output: it would be read or written as a file named "-"). */
static int tool_check_path_args(const char* tool, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '\0') {
      fprintf(stderr, "%s: argument %d is an empty path: give the path of a file\n", tool, i);
      return 2;
    }
    if (strcmp(argv[i], "-") == 0) {
      fprintf(stderr,
              "%s: argument %d is \"-\", but %s reads and writes files only, not standard input "
              "or output: give the path of a file (./- for a file named -)\n",
              tool, i, tool);
      return 2;
    }
  }
  return 0;
}

/* The one line for an input that tool_read_file could not read (errno `err`). */
static void tool_read_error(const char* tool, const char* path, int err, const char* what,
                            const char* kind) {
  if (err == ENODEV) {
    fprintf(stderr, "%s: %s: a device, not a file: give the path of a %s file\n", tool, path, kind);
  } else if (err == TOOL_ENOWRITER) {
    fprintf(stderr,
            "%s: %s: a FIFO (named pipe) that no process is writing to, so reading it would wait "
            "forever: start the process writing the %s into it first (e.g. cat FILE > %s &), or "
            "give the path of a %s file\n",
            tool, path, what, path, kind);
  } else {
    fprintf(stderr, "%s: cannot read %s: %s; %s\n", tool, path, strerror(err),
            tool_io_fix(err, 0, what, kind));
  }
}

#endif /* DC_TOOL_IO_H */
