;; wordcount.wat: counts the lines, words and bytes of an input blob, like `wc`.
;;
;;   argv[1]  name of the input, read from /inputs/<name>
;;   argv[2]  name of the result file written to /outputs/<name> (default wordcount.txt)
;;
;; The result is one line "LINES WORDS BYTES\n", written to the result file and to stdout.
;; Exit codes: 0 success; 1 usage; 3 the input cannot be read; 4 the output cannot be written.
;;
;; It relies on the runner's preopen order: fd 3 is /inputs (read-only), fd 4 is /outputs.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; Memory map: 0 argc | 4 argv buffer size | 8 iovec (ptr, len) | 16 bytes moved | 20 new fd
  ;;             64..127 decimal digits | 128..255 messages and the default output name
  ;;             256..511 argv pointers (at most 64) | 1024..33791 argv strings
  ;;             40960..57343 read buffer (16 KiB) | 58000.. result line
  (memory (export "memory") 1)
  (data (i32.const 128) "usage: wordcount INPUT [OUTPUT]\n")    ;; 32 bytes
  (data (i32.const 160) "wordcount: cannot read input\n")       ;; 29 bytes
  (data (i32.const 192) "wordcount: cannot write output\n")     ;; 31 bytes
  (data (i32.const 224) "wordcount.txt\00")

  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 8) (local.get $ptr))
    (i32.store (i32.const 12) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 8) (i32.const 1) (i32.const 16)))

  ;; Prints a message on stderr and exits with code.
  (func $die (param $code i32) (param $msg i32) (param $len i32)
    (drop (call $write (i32.const 2) (local.get $msg) (local.get $len)))
    (call $proc_exit (local.get $code)))

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; Space, tab, newline, vertical tab, form feed, carriage return.
  (func $is_space (param $c i32) (result i32)
    (i32.or (i32.eq (local.get $c) (i32.const 32))
            (i32.le_u (i32.sub (local.get $c) (i32.const 9)) (i32.const 4))))

  ;; Writes v in decimal at dst and returns the address after the last digit.
  (func $append_u64 (param $v i64) (param $dst i32) (result i32)
    (local $p i32)
    (local.set $p (i32.const 128))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
    (memory.copy (local.get $dst) (local.get $p) (i32.sub (i32.const 128) (local.get $p)))
    (i32.add (local.get $dst) (i32.sub (i32.const 128) (local.get $p))))

  (func (export "_start")
    (local $argc i32) (local $input i32) (local $output i32) (local $fd i32)
    (local $n i32) (local $i i32) (local $end i32) (local $c i32) (local $in_word i32)
    (local $lines i64) (local $words i64) (local $bytes i64)

    ;; Arguments: argv[1] is the input name, argv[2] the optional output name.
    (if (call $args_sizes_get (i32.const 0) (i32.const 4))
      (then (call $die (i32.const 1) (i32.const 128) (i32.const 32))))
    (local.set $argc (i32.load (i32.const 0)))
    (if (i32.or (i32.lt_u (local.get $argc) (i32.const 2))
          (i32.or (i32.gt_u (local.get $argc) (i32.const 64))
                  (i32.gt_u (i32.load (i32.const 4)) (i32.const 32768))))
      (then (call $die (i32.const 1) (i32.const 128) (i32.const 32))))
    (drop (call $args_get (i32.const 256) (i32.const 1024)))
    (local.set $input (i32.load (i32.const 260)))
    (local.set $output
      (if (result i32) (i32.ge_u (local.get $argc) (i32.const 3))
        (then (i32.load (i32.const 264)))
        (else (i32.const 224))))

    ;; Open /inputs/<input> for reading (rights: fd_read = 2).
    (if (call $path_open (i32.const 3) (i32.const 0)
          (local.get $input) (call $strlen (local.get $input))
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 20))
      (then (call $die (i32.const 3) (i32.const 160) (i32.const 29))))
    (local.set $fd (i32.load (i32.const 20)))

    ;; Read 16 KiB at a time; count newlines, word starts and bytes.
    (block $eof
      (loop $chunk
        (i32.store (i32.const 8) (i32.const 40960))
        (i32.store (i32.const 12) (i32.const 16384))
        (if (call $fd_read (local.get $fd) (i32.const 8) (i32.const 1) (i32.const 16))
          (then (call $die (i32.const 3) (i32.const 160) (i32.const 29))))
        (local.set $n (i32.load (i32.const 16)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $bytes (i64.add (local.get $bytes) (i64.extend_i32_u (local.get $n))))
        (local.set $i (i32.const 40960))
        (local.set $end (i32.add (i32.const 40960) (local.get $n)))
        (loop $byte
          (local.set $c (i32.load8_u (local.get $i)))
          (if (i32.eq (local.get $c) (i32.const 10))
            (then (local.set $lines (i64.add (local.get $lines) (i64.const 1)))))
          (if (call $is_space (local.get $c))
            (then (local.set $in_word (i32.const 0)))
            (else
              (if (i32.eqz (local.get $in_word))
                (then
                  (local.set $words (i64.add (local.get $words) (i64.const 1)))
                  (local.set $in_word (i32.const 1))))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $byte (i32.lt_u (local.get $i) (local.get $end))))
        (br $chunk)))
    (drop (call $fd_close (local.get $fd)))

    ;; Build "LINES WORDS BYTES\n" at 58000.
    (local.set $end (call $append_u64 (local.get $lines) (i32.const 58000)))
    (i32.store8 (local.get $end) (i32.const 32))
    (local.set $end (call $append_u64 (local.get $words) (i32.add (local.get $end) (i32.const 1))))
    (i32.store8 (local.get $end) (i32.const 32))
    (local.set $end (call $append_u64 (local.get $bytes) (i32.add (local.get $end) (i32.const 1))))
    (i32.store8 (local.get $end) (i32.const 10))
    (local.set $n (i32.sub (i32.add (local.get $end) (i32.const 1)) (i32.const 58000)))

    ;; Create /outputs/<output> (oflags: creat 1 | trunc 8; rights: fd_write = 64).
    (if (call $path_open (i32.const 4) (i32.const 0)
          (local.get $output) (call $strlen (local.get $output))
          (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 20))
      (then (call $die (i32.const 4) (i32.const 192) (i32.const 31))))
    (local.set $fd (i32.load (i32.const 20)))
    (if (call $write (local.get $fd) (i32.const 58000) (local.get $n))
      (then (call $die (i32.const 4) (i32.const 192) (i32.const 31))))
    (drop (call $fd_close (local.get $fd)))
    (drop (call $write (i32.const 1) (i32.const 58000) (local.get $n)))))
