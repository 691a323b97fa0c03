;; sum.wat: adds 1 + 2 + ... + N and prints the sum (decimal, newline) to stdout.
;;
;;   argv[1]  N in decimal (optional; N = 100 without it, which prints 5050)
;;
;; Exit codes: 0 success (returns from _start); 2 bad argument (message on stderr).
;; The loop runs N times, so fuel use grows linearly with N: a handy calibration task.
;; Arithmetic is modulo 2^64.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; Memory map: 0 argc | 4 argv buffer size | 8 iovec (ptr, len) | 16 bytes written
  ;;             64..127 decimal digits | 128 error message
  ;;             256..511 argv pointers (at most 64) | 1024.. argv strings (at most 32 KiB)
  (memory (export "memory") 1)
  (data (i32.const 128) "sum: N must be a decimal number\n")

  ;; Writes len bytes at ptr to the file descriptor fd (1 = stdout, 2 = stderr).
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 8) (local.get $ptr))
    (i32.store (i32.const 12) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 8) (i32.const 1) (i32.const 16))))

  (func $bad_argument
    (call $write (i32.const 2) (i32.const 128) (i32.const 32))
    (call $proc_exit (i32.const 2)))

  ;; Address of argv[1] (NUL-terminated), or 0 when there is no argument.
  (func $arg1 (result i32)
    (if (call $args_sizes_get (i32.const 0) (i32.const 4)) (then (call $bad_argument)))
    (if (i32.lt_u (i32.load (i32.const 0)) (i32.const 2)) (then (return (i32.const 0))))
    (if (i32.gt_u (i32.load (i32.const 0)) (i32.const 64)) (then (call $bad_argument)))
    (if (i32.gt_u (i32.load (i32.const 4)) (i32.const 32768)) (then (call $bad_argument)))
    (if (call $args_get (i32.const 256) (i32.const 1024)) (then (call $bad_argument)))
    (i32.load (i32.const 260)))

  ;; Parses the NUL-terminated decimal string at p; exits with code 2 on anything else.
  (func $parse (param $p i32) (result i64)
    (local $n i64) (local $digit i32)
    (if (i32.eqz (i32.load8_u (local.get $p))) (then (call $bad_argument)))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (local.get $p))))
        (local.set $digit (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
        (if (i32.gt_u (local.get $digit) (i32.const 9)) (then (call $bad_argument)))
        (local.set $n (i64.add (i64.mul (local.get $n) (i64.const 10))
                               (i64.extend_i32_u (local.get $digit))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; The loop this example exists for: 1 + 2 + ... + n.
  (func $sum (param $n i64) (result i64)
    (local $i i64) (local $acc i64)
    (local.set $i (i64.const 1))
    (block $done
      (loop $next
        (br_if $done (i64.gt_u (local.get $i) (local.get $n)))
        (local.set $acc (i64.add (local.get $acc) (local.get $i)))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $next)))
    (local.get $acc))

  ;; Prints v in decimal and a newline; digits are built backwards from address 127.
  (func $print_u64 (param $v i64)
    (local $p i32)
    (local.set $p (i32.const 127))
    (i32.store8 (local.get $p) (i32.const 10))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
    (call $write (i32.const 1) (local.get $p) (i32.sub (i32.const 128) (local.get $p))))

  (func (export "_start")
    (local $arg i32)
    (local.set $arg (call $arg1))
    (call $print_u64
      (call $sum
        (if (result i64) (local.get $arg)
          (then (call $parse (local.get $arg)))
          (else (i64.const 100)))))))
