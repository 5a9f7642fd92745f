;; tests/guests/echo: answers 200 with the raw request it received (request line, headers,
;; empty line, body) as the body, so router tests can see exactly what reached the guest.
;;
;; The request path picks a behaviour:
;;   /slow...  sleeps 1000 ms (WASI poll_oneoff, relative monotonic clock) before the
;;             response head, then echoes
;;   /trap...  traps (`unreachable`) without answering: the node reports the guest
;;             unavailable
;;   anything else echoes at once
;;
;; Every response also carries hop-by-hop headers (`connection: x-guest-secret`,
;; `x-guest-secret`, `keep-alive`) that a proxy must not pass on, and `x-echo: 1`, which it
;; must.
(module
  (import "ate" "response_start" (func $response_start (param i32 i32 i32) (result i32)))
  (import "ate" "response_write" (func $response_write (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)

  ;; Memory map:
  ;;   0..128    response headers (107 bytes)
  ;;   512..560  the clock subscription      576..608  the event poll_oneoff writes
  ;;   640       poll_oneoff's event count   700, 710  "/slow", "/trap"
  ;;   1024..    the request (ate_alloc), with 16 spare bytes after it
  (data (i32.const 0)
    "content-type: text/plain\r\nx-echo: 1\r\nconnection: x-guest-secret\r\nx-guest-secret: 1\r\nkeep-alive: timeout=5\r\n")
  (data (i32.const 700) "/slow")
  (data (i32.const 710) "/trap")

  (func (export "ate_alloc") (param $len i32) (result i32)
    (local $need i32)
    ;; pages needed to hold 1024 + len + 16 bytes (the spare lets prefix checks read past a
    ;; short request without leaving memory)
    (local.set $need
      (i32.shr_u (i32.add (i32.add (local.get $len) (i32.const 1040)) (i32.const 65535))
                 (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
          (then unreachable))))
    (i32.const 1024))

  ;; 1 when the $n bytes at $at equal the $n bytes at $lit.
  (func $starts (param $at i32) (param $lit i32) (param $n i32) (result i32)
    (local $i i32)
    (block $differs
      (loop $next
        (if (i32.eq (local.get $i) (local.get $n)) (then (return (i32.const 1))))
        (br_if $differs
          (i32.ne (i32.load8_u (i32.add (local.get $at) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $lit) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; Sleeps $ms milliseconds: one relative monotonic clock subscription. Returns the errno.
  (func $sleep (param $ms i32) (result i32)
    (i64.store (i32.const 512) (i64.const 0))          ;; userdata
    (i32.store8 (i32.const 520) (i32.const 0))         ;; tag: clock
    (i32.store (i32.const 528) (i32.const 1))          ;; clock id: monotonic
    (i64.store (i32.const 536)                         ;; timeout, nanoseconds
      (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (i64.store (i32.const 544) (i64.const 0))          ;; precision
    (i32.store16 (i32.const 552) (i32.const 0))        ;; flags: relative
    (call $poll_oneoff (i32.const 512) (i32.const 576) (i32.const 1) (i32.const 640)))

  (func (export "ate_handle") (param $ptr i32) (param $len i32) (result i32)
    (local $path i32)
    (local $end i32)
    (local $errno i32)
    ;; The path starts after the first space of the request line.
    (local.set $path (local.get $ptr))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (block $found
      (loop $next
        (br_if $found (i32.ge_u (local.get $path) (local.get $end)))
        (br_if $found (i32.eq (i32.load8_u (local.get $path)) (i32.const 32)))
        (local.set $path (i32.add (local.get $path) (i32.const 1)))
        (br $next)))
    (local.set $path (i32.add (local.get $path) (i32.const 1)))
    (if (call $starts (local.get $path) (i32.const 710) (i32.const 5))
      (then unreachable))
    (if (call $starts (local.get $path) (i32.const 700) (i32.const 5))
      (then
        (local.set $errno (call $sleep (i32.const 1000)))
        (if (local.get $errno) (then (return (local.get $errno))))))
    (drop (call $response_start (i32.const 200) (i32.const 0) (i32.const 107)))
    (drop (call $response_write (local.get $ptr) (local.get $len)))
    (i32.const 0))
)
