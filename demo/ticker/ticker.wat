;; demo/ticker: answers every request with a server-sent-events stream of ticks.
;;
;;   HTTP/1.1 200, content-type: text/event-stream, cache-control: no-cache
;;   data: tick 1\n\n   (at once)
;;   data: tick 2\n\n   (TICK_INTERVAL_MS later)
;;   ...
;;   data: tick COUNT\n\n, then the response ends.
;;
;; The environment sets the stream's shape, read on every request (so a snapshot restored
;; with another env follows the new one):
;;   TICK_COUNT        how many events (default 10)
;;   TICK_INTERVAL_MS  milliseconds between two events (default 1000); none before the first
;; A value must be 1 to 9 decimal digits; anything else (empty, a sign, other characters, 10
;; digits or more) means the default. 0 is allowed: no events, or no wait between them.
;;
;; The guest sleeps with WASI poll_oneoff on a relative monotonic clock; sleeping is not
;; compute, so a stream may last far longer than the request budget. When response_write
;; reports that the client is gone (non-zero), the guest stops at once. Each request also
;; writes "ticker: COUNT ticks every INTERVAL ms" to stdout (the actor's log).
(module
  (import "ate" "response_start" (func $response_start (param i32 i32 i32) (result i32)))
  (import "ate" "response_write" (func $response_write (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 2)

  ;; Memory map (page 0 is ours, the request and the environment live from page 1 on):
  ;;   0..58     response headers              64..75    "TICK_COUNT="
  ;;   80..97    "TICK_INTERVAL_MS="           112..123  "data: tick "
  ;;   128..136  "ticker: "                    136..149  " ticks every "
  ;;   152..156  " ms\n"                       156..158  "\n\n"
  ;;   160, 164  environ count, environ bytes  168..176  iovec for fd_write
  ;;   176       fd_write's byte count         184       poll_oneoff's event count
  ;;   192..240  the clock subscription        240..272  the event poll_oneoff writes
  ;;   288..320  digit scratch (ends at 320)   384..512  the line being built
  ;;   65536..   the request (ate_alloc), then the environment (per request)
  (data (i32.const 0) "content-type: text/event-stream\r\ncache-control: no-cache\r\n")
  (data (i32.const 64) "TICK_COUNT=")
  (data (i32.const 80) "TICK_INTERVAL_MS=")
  (data (i32.const 112) "data: tick ")
  (data (i32.const 128) "ticker: ")
  (data (i32.const 136) " ticks every ")
  (data (i32.const 152) " ms\n")
  (data (i32.const 156) "\n\n")

  ;; Grows memory until addresses below $end exist; traps if the page limit says no.
  (func $ensure (param $end i32)
    (local $need i32)
    (local.set $need
      (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
          (then unreachable)))))

  (func (export "ate_alloc") (param $len i32) (result i32)
    (call $ensure (i32.add (i32.const 65536) (local.get $len)))
    (i32.const 65536))

  ;; Copies $len bytes from $src to $at; returns the address after them.
  (func $append (param $at i32) (param $src i32) (param $len i32) (result i32)
    (memory.copy (local.get $at) (local.get $src) (local.get $len))
    (i32.add (local.get $at) (local.get $len)))

  ;; Writes the decimal digits of $n (unsigned) at $at; returns the address after them.
  (func $append_num (param $at i32) (param $n i32) (result i32)
    (local $d i32)
    (local.set $d (i32.const 320))
    (loop $next
      (local.set $d (i32.sub (local.get $d) (i32.const 1)))
      (i32.store8 (local.get $d) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $next (i32.ne (local.get $n) (i32.const 0))))
    (call $append (local.get $at) (local.get $d) (i32.sub (i32.const 320) (local.get $d))))

  ;; 1 when the NUL-terminated string at $s starts with the $len bytes at $prefix.
  (func $has_prefix (param $s i32) (param $prefix i32) (param $len i32) (result i32)
    (local $i i32)
    (block $differs
      (loop $next
        (if (i32.eq (local.get $i) (local.get $len)) (then (return (i32.const 1))))
        (br_if $differs
          (i32.ne (i32.load8_u (i32.add (local.get $s) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $prefix) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; The NUL-terminated decimal at $s, or $default unless it is 1 to 9 digits and nothing else.
  (func $parse (param $s i32) (param $default i32) (result i32)
    (local $c i32)
    (local $n i32)
    (local $digits i32)
    (block $done
      (loop $next
        (local.set $c (i32.load8_u (local.get $s)))
        (br_if $done (i32.eqz (local.get $c)))
        ;; c - '0' as unsigned > 9: not a digit
        (if (i32.gt_u (i32.sub (local.get $c) (i32.const 48)) (i32.const 9))
          (then (return (local.get $default))))
        (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
        (if (i32.gt_u (local.get $digits) (i32.const 9)) (then (return (local.get $default))))
        (local.set $n
          (i32.add (i32.mul (local.get $n) (i32.const 10))
                   (i32.sub (local.get $c) (i32.const 48))))
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (br $next)))
    (if (result i32) (i32.eqz (local.get $digits))
      (then (local.get $default))
      (else (local.get $n))))

  ;; The value of the variable named by the $len bytes at $prefix (which end in '='), among
  ;; the $count environ pointers at $ptrs; $default when it is unset or not a number.
  (func $setting (param $ptrs i32) (param $count i32) (param $prefix i32) (param $len i32)
                 (param $default i32) (result i32)
    (local $i i32)
    (local $s i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $s (i32.load (i32.add (local.get $ptrs) (i32.shl (local.get $i) (i32.const 2)))))
        (if (call $has_prefix (local.get $s) (local.get $prefix) (local.get $len))
          (then (return (call $parse (i32.add (local.get $s) (local.get $len)) (local.get $default)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $default))

  ;; Sleeps $ms milliseconds: one relative monotonic clock subscription. Returns the errno.
  (func $sleep (param $ms i32) (result i32)
    (i64.store (i32.const 192) (i64.const 0))          ;; userdata
    (i32.store8 (i32.const 200) (i32.const 0))         ;; tag: clock
    (i32.store (i32.const 208) (i32.const 1))          ;; clock id: monotonic
    (i64.store (i32.const 216)                         ;; timeout, nanoseconds
      (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (i64.store (i32.const 224) (i64.const 0))          ;; precision
    (i32.store16 (i32.const 232) (i32.const 0))        ;; flags: relative
    (call $poll_oneoff (i32.const 192) (i32.const 240) (i32.const 1) (i32.const 184)))

  ;; Returns 0 when the stream ended (all ticks sent, or the client left), else the errno of a
  ;; failed environ_* or poll_oneoff call.
  (func (export "ate_handle") (param $ptr i32) (param $len i32) (result i32)
    (local $env i32)
    (local $strings i32)
    (local $errno i32)
    (local $count i32)
    (local $interval i32)
    (local $n i32)
    (local $at i32)

    ;; The environment, after the request: pointers at $env (4-aligned), strings after them.
    (local.set $errno (call $environ_sizes_get (i32.const 160) (i32.const 164)))
    (if (local.get $errno) (then (return (local.get $errno))))
    (local.set $env
      (i32.and (i32.add (i32.add (local.get $ptr) (local.get $len)) (i32.const 3))
               (i32.const -4)))
    (local.set $strings
      (i32.add (local.get $env) (i32.shl (i32.load (i32.const 160)) (i32.const 2))))
    (call $ensure (i32.add (local.get $strings) (i32.load (i32.const 164))))
    (local.set $errno (call $environ_get (local.get $env) (local.get $strings)))
    (if (local.get $errno) (then (return (local.get $errno))))
    (local.set $count
      (call $setting (local.get $env) (i32.load (i32.const 160))
                     (i32.const 64) (i32.const 11) (i32.const 10)))
    (local.set $interval
      (call $setting (local.get $env) (i32.load (i32.const 160))
                     (i32.const 80) (i32.const 17) (i32.const 1000)))

    ;; log "ticker: COUNT ticks every INTERVAL ms\n"
    (local.set $at (call $append (i32.const 384) (i32.const 128) (i32.const 8)))
    (local.set $at (call $append_num (local.get $at) (local.get $count)))
    (local.set $at (call $append (local.get $at) (i32.const 136) (i32.const 13)))
    (local.set $at (call $append_num (local.get $at) (local.get $interval)))
    (local.set $at (call $append (local.get $at) (i32.const 152) (i32.const 4)))
    (i32.store (i32.const 168) (i32.const 384))
    (i32.store (i32.const 172) (i32.sub (local.get $at) (i32.const 384)))
    (drop (call $fd_write (i32.const 1) (i32.const 168) (i32.const 1) (i32.const 176)))

    (if (call $response_start (i32.const 200) (i32.const 0) (i32.const 58))
      (then (return (i32.const 0))))
    (local.set $n (i32.const 1))
    (block $done
      (loop $next
        (br_if $done (i32.gt_u (local.get $n) (local.get $count)))
        (if (i32.gt_u (local.get $n) (i32.const 1))
          (then
            (local.set $errno (call $sleep (local.get $interval)))
            (if (local.get $errno) (then (return (local.get $errno))))))
        ;; "data: tick N\n\n"
        (local.set $at (call $append (i32.const 384) (i32.const 112) (i32.const 11)))
        (local.set $at (call $append_num (local.get $at) (local.get $n)))
        (local.set $at (call $append (local.get $at) (i32.const 156) (i32.const 2)))
        ;; non-zero: the client is gone (or no request is running); stop streaming
        (br_if $done
          (call $response_write (i32.const 384) (i32.sub (local.get $at) (i32.const 384))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (i32.const 0))
)
