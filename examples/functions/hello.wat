;; hello.wat: a WAGI-style function (a WASI preview1 command). It writes a
;; CGI header block, a greeting, then the request body it reads from stdin.
;; examples/functions/hello.wasm is this file compiled (a test checks that
;; they agree).
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "Content-Type: text/plain\nX-Powered-By: flagbase-functions\n\nHello from WebAssembly! You sent: ")
  ;; write(ptr, len): one iovec at 0..8 to stdout; bytes written land at 8.
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (local $n i32)
    (call $write (i32.const 1024) (i32.const 93))
    (block $done
      (loop $more
        ;; read up to 64 KiB of the body into 65536.. (iovec at 16, count at 24)
        (i32.store (i32.const 16) (i32.const 65536))
        (i32.store (i32.const 20) (i32.const 65536))
        (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
        (local.set $n (i32.load (i32.const 24)))
        (br_if $done (i32.eqz (local.get $n)))
        (call $write (i32.const 65536) (local.get $n))
        (br $more)))))
