;; A wasi-http 0.2 handler written by hand: answers every request with
;; 200 and the body "Hello from WebAssembly!\n". Imports follow the component
;; model's canonical ABI naming; wit-component checks every signature.
(module
  (import "wasi:http/types@0.2.12" "[constructor]fields" (func $fields_new (result i32)))
  (import "wasi:http/types@0.2.12" "[constructor]outgoing-response" (func $response_new (param i32) (result i32)))
  (import "wasi:http/types@0.2.12" "[method]outgoing-response.body" (func $response_body (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[static]response-outparam.set"
    (func $outparam_set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.12" "[method]outgoing-body.write" (func $body_write (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[static]outgoing-body.finish" (func $body_finish (param i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.12" "[resource-drop]incoming-request" (func $drop_request (param i32)))
  (import "wasi:io/streams@0.2.12" "[method]output-stream.blocking-write-and-flush"
    (func $write_flush (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.12" "[resource-drop]output-stream" (func $drop_stream (param i32)))

  (memory (export "memory") 1)
  (data (i32.const 1024) "Hello from WebAssembly!\n")
  (global $heap (mut i32) (i32.const 4096))

  ;; Results come back through memory at 64 (retptr); strings the host
  ;; lowers (error texts) go to a bump heap that is never freed: a request
  ;; that fails is already the end of this instance's work.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))

  (func (export "wasi:http/incoming-handler@0.2.12#handle") (param $request i32) (param $out i32)
    (local $response i32) (local $body i32) (local $stream i32)
    (call $drop_request (local.get $request))
    (local.set $response (call $response_new (call $fields_new)))
    ;; result<outgoing-body> at 64: tag, handle
    (call $response_body (local.get $response) (i32.const 64))
    (local.set $body (i32.load (i32.const 68)))
    ;; ok(response)
    (call $outparam_set (local.get $out) (i32.const 0) (local.get $response)
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    ;; result<output-stream> at 64
    (call $body_write (local.get $body) (i32.const 64))
    (local.set $stream (i32.load (i32.const 68)))
    (call $write_flush (local.get $stream) (i32.const 1024) (i32.const 24) (i32.const 64))
    (call $drop_stream (local.get $stream))
    ;; finish(body, none)
    (call $body_finish (local.get $body) (i32.const 0) (i32.const 0) (i32.const 64)))
)
