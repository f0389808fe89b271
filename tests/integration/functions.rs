//! Functions end to end: WebAssembly text compiled with `wat`, deployed over
//! HTTP, invoked CGI-style; hostile modules fail cleanly while others keep
//! working; versions, settings, the flag gate, host calls, restart.

use serde_json::{json, Value};

use crate::harness::{Flagbase, Options, Resp};

/// Imports and helpers every test module shares: `$write(ptr, len)` to
/// stdout through an iovec at 0..8, `nwritten` at 8.
const PRELUDE: &str = r#"
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 4)
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
"#;

pub fn module(extra_imports: &str, data: &[(u32, &str)], start_body: &str) -> Vec<u8> {
    let data: String = data
        .iter()
        .map(|(at, text)| {
            format!(
                "(data (i32.const {at}) \"{}\")\n",
                text.replace('\n', "\\n").replace('"', "\\\"")
            )
        })
        .collect();
    let text = format!("(module\n{extra_imports}\n{PRELUDE}\n{data}\n(func (export \"_start\") (local $n i32)\n{start_body}))");
    wat::parse_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// CGI headers, then stdin copied to stdout.
pub fn echo() -> Vec<u8> {
    let head = "Content-Type: text/plain\nStatus: 201\nX-Fn: echo\n\n";
    module(
        "",
        &[(1024, head)],
        &format!(
            r#"
      (call $write (i32.const 1024) (i32.const {}))
      (block $done (loop $more
        (i32.store (i32.const 16) (i32.const 65536))
        (i32.store (i32.const 20) (i32.const 65536))
        (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
        (local.set $n (i32.load (i32.const 24)))
        (br_if $done (i32.eqz (local.get $n)))
        (call $write (i32.const 65536) (local.get $n))
        (br $more)))"#,
            head.len()
        ),
    )
}

/// Writes its environment, one variable a line, no header block.
pub fn env_dump() -> Vec<u8> {
    module(
        "",
        &[],
        r#"
      (drop (call $environ_sizes_get (i32.const 32) (i32.const 36)))
      (drop (call $environ_get (i32.const 4096) (i32.const 65536)))
      (local.set $n (i32.const 0))
      (block $done (loop $each
        (br_if $done (i32.ge_u (local.get $n) (i32.load (i32.const 36))))
        (if (i32.eqz (i32.load8_u (i32.add (i32.const 65536) (local.get $n))))
          (then (i32.store8 (i32.add (i32.const 65536) (local.get $n)) (i32.const 10))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $each)))
      (call $write (i32.const 65536) (i32.load (i32.const 36)))"#,
    )
}

/// Writes a fixed text.
fn says(text: &str) -> Vec<u8> {
    module(
        "",
        &[(1024, text)],
        &format!("(call $write (i32.const 1024) (i32.const {}))", text.len()),
    )
}

/// Calls a `flagbase` host function writing into 2048.. and prints what it
/// returned; a negative result becomes exit status 10 - result.
fn host_call(import: &str, call: &str, data: &[(u32, &str)]) -> Vec<u8> {
    module(
        import,
        data,
        &format!(
            r#"
      (local.set $n {call})
      (if (i32.lt_s (local.get $n) (i32.const 0))
        (then (call $proc_exit (i32.sub (i32.const 10) (local.get $n)))))
      (call $write (i32.const 2048) (local.get $n))"#
        ),
    )
}

fn hostile(kind: &str) -> Vec<u8> {
    let body = match kind {
        "loop" => "(loop $forever (br $forever))",
        "memory" => {
            "(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))"
        }
        "output" => "(loop $spew (call $write (i32.const 65536) (i32.const 65536)) (br $spew))",
        "trap" => "unreachable",
        "exit" => "(call $proc_exit (i32.const 3))",
        "recursion" => "(call $deep)",
        other => panic!("{other}"),
    };
    let extra = if kind == "recursion" {
        "(func $deep (call $deep))"
    } else {
        ""
    };
    let text = format!("(module\n{PRELUDE}\n{extra}\n(func (export \"_start\") {body}))");
    wat::parse_str(&text).unwrap()
}

pub struct World {
    pub fb: Flagbase,
    pub admin: String,
    pub dev: String,
    pub user: String,
    pub user_id: String,
}

async fn world_with(options: Options) -> World {
    let fb = Flagbase::start_with(options).await;
    let admin = fb.setup_admin("root@example.com").await;
    let (_, dev) = fb.user("dev@example.com", "developer", Some(&admin)).await;
    let (user_id, user) = fb.user("user@example.com", "user", None).await;
    World {
        fb,
        admin,
        dev,
        user,
        user_id,
    }
}

pub async fn world() -> World {
    world_with(Options::default()).await
}

pub async fn deploy(w: &World, name: &str, wasm: Vec<u8>) -> Resp {
    w.fb.send(
        w.fb.http
            .put(w.fb.url(&format!("/api/v1/functions/{name}")))
            .bearer_auth(&w.dev)
            .header("content-type", "application/wasm")
            .body(wasm),
    )
    .await
}

pub async fn deployed(w: &World, name: &str, wasm: Vec<u8>) -> Value {
    let r = deploy(w, name, wasm).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

async fn call(w: &World, path: &str, body: &str) -> Resp {
    w.fb.send(
        w.fb.http
            .post(w.fb.url(path))
            .bearer_auth(&w.user)
            .body(body.to_string()),
    )
    .await
}

async fn patch(w: &World, name: &str, body: Value) -> Resp {
    w.fb.send(
        w.fb.http
            .patch(w.fb.url(&format!("/api/v1/functions/{name}")))
            .bearer_auth(&w.dev)
            .json(&body),
    )
    .await
}

#[tokio::test]
async fn functions_echo_with_cgi_headers_status_and_body() {
    let w = world().await;
    let v = deployed(&w, "echo", echo()).await;
    assert_eq!(
        (v["name"].as_str(), v["version"].as_u64()),
        (Some("echo"), Some(1))
    );
    assert_eq!(v["sha256"].as_str().map(str::len), Some(64));
    let r = call(&w, "/functions/echo/some/path?x=1", "hello body").await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("x-fn"), Some("echo"));
    assert_eq!(
        r.header("content-type"),
        Some("text/plain"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.body, json!("hello body"));
    let api = call(&w, "/api/v1/functions/echo/invoke", "from tooling").await;
    assert_eq!((api.status, api.body.clone()), (201, json!("from tooling")));
    // Without credentials there is no call.
    let anonymous = w.fb.send(w.fb.http.get(w.fb.url("/functions/echo"))).await;
    anonymous.error(401);
    call(&w, "/functions/missing", "").await.error(404);
}

#[tokio::test]
async fn functions_see_the_request_and_identity_but_never_credentials() {
    let w = world().await;
    deployed(&w, "env", env_dump()).await;
    let r = patch(&w, "env", json!({"env": {"GREETING": "hello"}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r =
        w.fb.send(
            w.fb.http
                .put(w.fb.url("/functions/env/a/b?q=1&r=2"))
                .bearer_auth(&w.user)
                .header("x-custom", "yes")
                .header("cookie", "session=secret-cookie")
                .header("content-type", "text/csv")
                .body("abc"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let out = r.body.as_str().unwrap().to_string();
    let lines: Vec<&str> = out.lines().collect();
    for expected in [
        "REQUEST_METHOD=PUT".to_string(),
        "PATH_INFO=/a/b".into(),
        "QUERY_STRING=q=1&r=2".into(),
        "CONTENT_TYPE=text/csv".into(),
        "CONTENT_LENGTH=3".into(),
        "HTTP_X_CUSTOM=yes".into(),
        format!("FLAGBASE_USER_ID={}", w.user_id),
        "FLAGBASE_ROLE=user".into(),
        "GREETING=hello".into(),
    ] {
        assert!(
            lines.contains(&expected.as_str()),
            "{expected} missing from\n{out}"
        );
    }
    assert!(
        !out.contains(&w.user)
            && !out.contains("secret-cookie")
            && !out.contains("HTTP_AUTHORIZATION"),
        "{out}"
    );
    // A setting cannot shadow the request's variables.
    patch(&w, "env", json!({"env": {"PATH_INFO": "/evil"}}))
        .await
        .error(400);
}

#[tokio::test]
async fn functions_refuse_invalid_modules_names_and_roles() {
    let w = world().await;
    let r = deploy(&w, "bad", b"not wasm at all".to_vec()).await;
    assert_eq!(r.error(400), "invalid");
    assert!(
        r.body["error"].as_str().unwrap().contains("module"),
        "{}",
        r.body
    );
    let no_start = wat::parse_str("(module (memory (export \"memory\") 1))").unwrap();
    let r = deploy(&w, "lib", no_start).await;
    assert!(
        r.body["error"].as_str().unwrap().contains("_start"),
        "{}",
        r.body
    );
    let net =
        wat::parse_str("(module (import \"env\" \"socket\" (func)) (func (export \"_start\")))")
            .unwrap();
    assert!(deploy(&w, "net", net).await.body["error"]
        .as_str()
        .unwrap()
        .contains("env::socket"));
    deploy(&w, "a%20b", echo()).await.error(400);
    let as_user =
        w.fb.send(
            w.fb.http
                .put(w.fb.url("/api/v1/functions/echo"))
                .bearer_auth(&w.user)
                .body(echo()),
        )
        .await;
    as_user.error(403);
    assert_eq!(
        w.fb.get("/api/v1/functions", Some(&w.dev)).await.body["functions"],
        json!([])
    );
}

#[tokio::test]
async fn functions_deploy_by_multipart_form() {
    let w = world().await;
    let boundary = "fbBoundary42";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nhello\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"module\"; filename=\"hello.wasm\"\r\nContent-Type: application/wasm\r\n\r\n").into_bytes();
    body.extend(says("hi from a form"));
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let r =
        w.fb.send(
            w.fb.http
                .post(w.fb.url("/api/v1/functions"))
                .bearer_auth(&w.dev)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        call(&w, "/functions/hello", "").await.body,
        json!("hi from a form")
    );
}

#[tokio::test]
async fn functions_hostile_modules_fail_cleanly_while_others_keep_working() {
    let w = world().await;
    deployed(&w, "echo", echo()).await;
    for (kind, status, needle) in [
        ("loop", 504, "timeout"),
        ("memory", 500, "memory limit"),
        ("output", 500, "bytes of output"),
        ("trap", 500, "trapped"),
        ("exit", 500, "exited with status 3"),
        ("recursion", 500, "stack"),
    ] {
        deployed(&w, kind, hostile(kind)).await;
        let r = patch(
            &w,
            kind,
            json!({"timeout": "300ms", "memory_limit": "1MiB"}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = call(&w, &format!("/functions/{kind}"), "").await;
        let code = r.error(status).to_string();
        assert_eq!(
            code,
            if status == 504 {
                "timeout"
            } else {
                "function_failed"
            }
        );
        assert!(
            r.body["error"].as_str().unwrap().contains(needle),
            "{kind}: {}",
            r.body
        );
        // The server keeps serving others.
        let ok = call(&w, "/functions/echo", kind).await;
        assert_eq!((ok.status, ok.body.clone()), (201, json!(kind)));
        let log =
            w.fb.get(
                &format!("/api/v1/functions/{kind}/invocations"),
                Some(&w.dev),
            )
            .await;
        let last = &log.body["invocations"][0];
        assert_eq!(last["status"].as_u64(), Some(status as u64), "{}", log.body);
        assert_eq!(last["caller"].as_str(), Some(w.user_id.as_str()));
    }
    let exit =
        w.fb.get("/api/v1/functions/exit/invocations", Some(&w.dev))
            .await;
    assert_eq!(exit.body["invocations"][0]["exit_code"], 3);
}

#[tokio::test]
async fn functions_concurrency_is_capped() {
    let w = world_with(Options::default().set("functions.max_concurrency", "1")).await;
    deployed(&w, "loop", hostile("loop")).await;
    deployed(&w, "echo", echo()).await;
    // Long enough to outlast a loaded machine; the loop is cut at the timeout.
    patch(&w, "loop", json!({"timeout": "8s"})).await;
    // The loop itself may be the one refused while an echo holds the
    // slot, so it retries until it runs.
    let slow = {
        let (http, url, token) = (
            w.fb.http.clone(),
            w.fb.url("/functions/loop"),
            w.user.clone(),
        );
        tokio::spawn(async move {
            loop {
                let response = http.post(&url).bearer_auth(&token).send().await?;
                if response.status().as_u16() != 503 {
                    return Ok::<u16, reqwest::Error>(response.status().as_u16());
                }
            }
        })
    };
    // Once the loop holds the only slot, others are turned away with 503.
    let refused = loop {
        let r = call(&w, "/functions/echo", "x").await;
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 201, "{}", r.body);
        assert!(
            !slow.is_finished(),
            "the loop ended before any call was refused: {:?}",
            slow.await
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(refused.error(503), "unavailable");
    assert_eq!(slow.await.unwrap().unwrap(), 504);
    assert_eq!(call(&w, "/functions/echo", "x").await.status, 201);
}

#[tokio::test]
async fn functions_versions_and_rollback() {
    let w = world().await;
    deployed(&w, "greet", says("one")).await;
    let v2 = deployed(&w, "greet", says("two")).await;
    assert_eq!(v2["version"], 2);
    assert_eq!(call(&w, "/functions/greet", "").await.body, json!("two"));
    let r =
        w.fb.post(
            "/api/v1/functions/greet/activate",
            json!({"version": 1}),
            Some(&w.dev),
        )
        .await;
    assert_eq!(
        (r.status, r.body["active_version"].as_u64()),
        (200, Some(1)),
        "{}",
        r.body
    );
    assert_eq!(call(&w, "/functions/greet", "").await.body, json!("one"));
    w.fb.post(
        "/api/v1/functions/greet/activate",
        json!({"version": 9}),
        Some(&w.dev),
    )
    .await
    .error(404);
    let info = w.fb.get("/api/v1/functions/greet", Some(&w.user)).await;
    assert_eq!(
        info.body["versions"].as_array().map(Vec::len),
        Some(2),
        "{}",
        info.body
    );
    assert_eq!(info.body["settings"]["timeout"], "5s");
    let audit =
        w.fb.get("/api/v1/audit?target=function:greet", Some(&w.dev))
            .await;
    assert!(audit.status == 200 || audit.status == 403);
    assert_eq!(
        w.fb.delete("/api/v1/functions/greet", Some(&w.dev))
            .await
            .status,
        204
    );
    call(&w, "/functions/greet", "").await.error(404);
}

#[tokio::test]
async fn functions_behind_a_flag_run_only_for_callers_it_is_on_for() {
    let w = world().await;
    let flag = json!({"key": "beta-fn", "enabled": true, "default_value": false,
        "rules": [{"attribute": "role", "operator": "equals", "value": "developer", "variant": true, "priority": 0}]});
    assert_eq!(
        w.fb.post("/api/v1/flags", flag, Some(&w.dev)).await.status,
        201
    );
    deployed(&w, "beta", says("beta!")).await;
    assert_eq!(
        patch(&w, "beta", json!({"flag_key": "beta-fn"}))
            .await
            .status,
        200
    );
    call(&w, "/functions/beta", "").await.error(404);
    let dev =
        w.fb.send(
            w.fb.http
                .get(w.fb.url("/functions/beta"))
                .bearer_auth(&w.dev),
        )
        .await;
    assert_eq!((dev.status, dev.body.clone()), (200, json!("beta!")));
    assert_eq!(
        patch(&w, "beta", json!({"flag_key": null})).await.status,
        200
    );
    assert_eq!(call(&w, "/functions/beta", "").await.status, 200);
}

#[tokio::test]
async fn functions_host_calls_evaluate_flags_name_the_caller_and_reach_only_their_buckets() {
    let w = world().await;
    let flag = json!({"key": "greeting", "enabled": true, "default_value": true});
    assert_eq!(
        w.fb.post("/api/v1/flags", flag, Some(&w.dev)).await.status,
        201
    );
    let flag_eval =
        r#"(import "flagbase" "flag_eval" (func $flag_eval (param i32 i32 i32 i32) (result i32)))"#;
    deployed(
        &w,
        "flag",
        host_call(
            flag_eval,
            "(call $flag_eval (i32.const 1024) (i32.const 8) (i32.const 2048) (i32.const 4096))",
            &[(1024, "greeting")],
        ),
    )
    .await;
    let r = call(&w, "/functions/flag", "").await;
    let eval: Value = serde_json::from_str(r.body.as_str().unwrap_or(&r.body.to_string()))
        .unwrap_or(r.body.clone());
    assert_eq!(eval["value"], true, "{}", r.body);
    let caller = r#"(import "flagbase" "caller" (func $caller (param i32 i32) (result i32)))"#;
    deployed(
        &w,
        "who",
        host_call(
            caller,
            "(call $caller (i32.const 2048) (i32.const 4096))",
            &[],
        ),
    )
    .await;
    let r = call(&w, "/functions/who", "").await;
    assert_eq!(r.body, json!({"user_id": w.user_id, "role": "user"}));

    let buckets = r#"(import "flagbase" "bucket_put" (func $put (param i32 i32 i32 i32 i32 i32) (result i32)))
      (import "flagbase" "bucket_get" (func $get (param i32 i32 i32 i32 i32 i32) (result i32)))"#;
    let store = "(block (result i32)
        (local.set $n (call $put (i32.const 1024) (i32.const 5) (i32.const 1040) (i32.const 9) (i32.const 1056) (i32.const 5)))
        (if (i32.ne (local.get $n) (i32.const 0)) (then (call $proc_exit (i32.sub (i32.const 10) (local.get $n)))))
        (call $get (i32.const 1024) (i32.const 5) (i32.const 1040) (i32.const 9) (i32.const 2048) (i32.const 4096)))";
    deployed(
        &w,
        "store",
        host_call(
            buckets,
            store,
            &[(1024, "notes"), (1040, "hello.txt"), (1056, "saved")],
        ),
    )
    .await;
    // Not one of its buckets yet: refused (-2 → exit status 12).
    let r = call(&w, "/functions/store", "").await;
    assert!(
        r.body["error"].as_str().unwrap().contains("status 12"),
        "{}",
        r.body
    );
    patch(&w, "store", json!({"buckets": ["notes"]})).await;
    assert_eq!(call(&w, "/functions/store", "").await.body, json!("saved"));
    let object =
        w.fb.get("/api/v1/buckets/notes/objects/hello.txt", Some(&w.user))
            .await;
    assert_eq!(object.body, json!("saved"));
}

/// A run goes to its end when the caller hangs up: the module is never
/// stopped between two host calls (here: after its work, before it stores
/// the result), and the run is in the invocation log like any other.
#[tokio::test]
async fn functions_run_to_their_end_when_the_caller_hangs_up() {
    let w = world().await;
    let put = r#"(import "flagbase" "bucket_put" (func $put (param i32 i32 i32 i32 i32 i32) (result i32)))"#;
    // Some hundreds of milliseconds of work, then the write.
    let work_then_store = "(block (result i32)
        (loop $spin
          (local.set $n (i32.add (local.get $n) (i32.const 1)))
          (br_if $spin (i32.lt_u (local.get $n) (i32.const 400000000))))
        (call $put (i32.const 1024) (i32.const 5) (i32.const 1040) (i32.const 9) (i32.const 1056) (i32.const 4)))";
    deployed(
        &w,
        "slow-store",
        host_call(
            put,
            work_then_store,
            &[(1024, "notes"), (1040, "later.txt"), (1056, "done")],
        ),
    )
    .await;
    patch(
        &w,
        "slow-store",
        json!({"buckets": ["notes"], "timeout": "20s"}),
    )
    .await;
    let hung_up =
        w.fb.http
            .post(w.fb.url("/functions/slow-store"))
            .bearer_auth(&w.user)
            .timeout(std::time::Duration::from_millis(30))
            .send()
            .await;
    assert!(
        hung_up.is_err(),
        "the call should outlast its 30 ms: {hung_up:?}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let object =
            w.fb.get("/api/v1/buckets/notes/objects/later.txt", Some(&w.user))
                .await;
        if object.status == 200 {
            assert_eq!(object.body, json!("done"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never stored its result: {} {}",
            object.status,
            object.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Logged once the run has concluded, just after its last host call.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let log =
            w.fb.get("/api/v1/functions/slow-store/invocations", Some(&w.dev))
                .await;
        let runs = log.body["invocations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(run) = runs.first() {
            assert_eq!(
                run["caller"].as_str(),
                Some(w.user_id.as_str()),
                "{}",
                log.body
            );
            assert_eq!(run["outcome"], "ok", "{}", log.body);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run was never logged: {}",
            log.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn functions_survive_a_restart_from_the_artifact_cache() {
    let w = world().await;
    deployed(&w, "echo", echo()).await;
    patch(&w, "echo", json!({"timeout": "2s"})).await;
    let cache = w.fb.dir().join("data/storage/cache/functions");
    let artifacts: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(
        artifacts.len(),
        1,
        "one compiled artifact in {}",
        cache.display()
    );
    let fb = w.fb.restart();
    let user = fb.login("user@example.com").await;
    let r = fb
        .send(
            fb.http
                .post(fb.url("/functions/echo"))
                .bearer_auth(&user)
                .body("again"),
        )
        .await;
    assert_eq!((r.status, r.body.clone()), (201, json!("again")));
    let dev = fb.login("dev@example.com").await;
    let info = fb.get("/api/v1/functions/echo", Some(&dev)).await;
    assert_eq!(info.body["settings"]["timeout"], "2s");
}

#[tokio::test]
async fn functions_report_events_and_failures_to_the_detector() {
    let w = world().await;
    let flag = json!({"key": "exp", "enabled": true, "default_value": true});
    assert_eq!(
        w.fb.post("/api/v1/flags", flag, Some(&w.dev)).await.status,
        201
    );
    let record = r#"(import "flagbase" "record_event" (func $record (param i32 i32 i32 i32 f64) (result i32)))"#;
    let wasm = module(
        record,
        &[(1024, "exp"), (1040, "conversion")],
        r#"
      (drop (call $record (i32.const 1024) (i32.const 3) (i32.const 1040) (i32.const 10) (f64.const 2.5)))
      unreachable"#,
    );
    deployed(&w, "boom", wasm).await;
    patch(&w, "boom", json!({"flag_key": "exp"})).await;
    call(&w, "/functions/boom", "").await.error(500);
    let m =
        w.fb.get("/api/v1/flags/exp/metrics?window=1h", Some(&w.admin))
            .await;
    assert_eq!(m.status, 200, "{}", m.body);
    let served = &m.body["variants"]["true"];
    assert_eq!(served["exposure"]["count"], 1, "{}", m.body);
    assert_eq!(served["error"]["count"], 1, "{}", m.body);
    assert_eq!(
        (
            served["conversion"]["count"].clone(),
            served["conversion"]["sum"].clone()
        ),
        (json!(1), json!(2.5)),
        "{}",
        m.body
    );
}

/// The README's example: `examples/functions/hello.wasm` is its `.wat`
/// compiled, and deploys and answers as the README shows.
#[tokio::test]
async fn functions_readme_example_module_deploys_and_answers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/functions");
    let compiled = wat::parse_file(root.join("hello.wat")).unwrap();
    let shipped = std::fs::read(root.join("hello.wasm")).unwrap_or_default();
    if shipped != compiled {
        if std::env::var_os("FLAGBASE_BLESS").is_some() {
            std::fs::write(root.join("hello.wasm"), &compiled).unwrap();
        } else {
            panic!("examples/functions/hello.wasm is not hello.wat compiled; rerun with FLAGBASE_BLESS=1");
        }
    }
    let w = world().await;
    deployed(&w, "hello", compiled).await;
    let r = call(&w, "/functions/hello", "ping").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-powered-by"), Some("flagbase-functions"));
    assert_eq!(r.body, json!("Hello from WebAssembly! You sent: ping"));
}
