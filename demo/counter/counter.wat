;; demo/counter: counts the requests it has handled and answers with the count.
;;
;; The count lives twice, in linear memory (address 0) and in a mutable global that the
;; module does not export, and the two must agree: a restore that lost either one traps
;; instead of answering. Each request also writes a line to stdout (the actor's log).
(module
  (import "ate" "response_start" (func $response_start (param i32 i32 i32) (result i32)))
  (import "ate" "response_write" (func $response_write (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (global $calls (mut i64) (i64.const 0))

  ;; 0..8: the count. 16..: response headers. 64..: the digits (right-aligned, ending at 96).
  ;; 128..: the log line. 256..: iovec. 1024..: the request buffer.
  (data (i32.const 16) "content-type: text/plain\r\n")
  (data (i32.const 128) "counter: request ")

  (func (export "ate_alloc") (param $len i32) (result i32)
    (local $need i32)
    ;; pages needed to hold 1024 + len bytes
    (local.set $need
      (i32.shr_u (i32.add (i32.add (local.get $len) (i32.const 1024)) (i32.const 65535))
                 (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
          (then unreachable))))
    (i32.const 1024))

  ;; Writes the decimal digits of $n ending at address 96; returns the first digit's address.
  (func $digits (param $n i64) (result i32)
    (local $at i32)
    (local.set $at (i32.const 96))
    (loop $next
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i64.store8 (local.get $at) (i64.add (i64.const 48) (i64.rem_u (local.get $n) (i64.const 10))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $next (i64.ne (local.get $n) (i64.const 0))))
    (local.get $at))

  (func (export "ate_handle") (param $ptr i32) (param $len i32) (result i32)
    (local $count i64)
    (local $at i32)
    (local $n i32)
    (local.set $count (i64.add (i64.load (i32.const 0)) (i64.const 1)))
    (i64.store (i32.const 0) (local.get $count))
    (global.set $calls (i64.add (global.get $calls) (i64.const 1)))
    (if (i64.ne (global.get $calls) (local.get $count)) (then unreachable))
    (local.set $at (call $digits (local.get $count)))
    (local.set $n (i32.sub (i32.const 96) (local.get $at)))
    ;; log "counter: request N\n": copy the digits after the prefix (17 bytes at 128)
    (memory.copy (i32.const 145) (local.get $at) (local.get $n))
    (i32.store8 (i32.add (i32.const 145) (local.get $n)) (i32.const 10))
    (i32.store (i32.const 256) (i32.const 128))
    (i32.store (i32.const 260) (i32.add (i32.const 18) (local.get $n)))
    (drop (call $fd_write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 264)))
    (drop (call $response_start (i32.const 200) (i32.const 16) (i32.const 26)))
    (drop (call $response_write (local.get $at) (local.get $n)))
    (i32.const 0))
)
