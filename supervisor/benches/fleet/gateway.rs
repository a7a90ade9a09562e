//! The HTTP gateway's figures, each beside what it stands in front of, in
//! the same run: a protocol plugin's route over RPC (the Rust example
//! `kv`'s `GET /kv/{key}`, a 64-byte value) against the direct call of the
//! same plugin (`get`), and a plain server behind the reverse proxy against
//! direct HTTP to its port (a 64-byte body). The plain server is this
//! benchmark's own binary, run again as a tiny hyper server when
//! [`SERVE`] is set, so both sides of the proxy row pay the same server.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Set in the plain server's environment: serve 64 bytes on `$PORT`.
pub(super) const SERVE: &str = "CORRAL_BENCH_SERVE_HTTP";
/// Requests per sample set, in rounds alternating the two sides.
const REQUESTS: usize = 5_000;
const ROUNDS: usize = 10;

/// Serves 64 bytes to every request on `127.0.0.1:$PORT`, forever.
pub(super) fn serve() -> ! {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .expect("PORT");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        vec![b'x'; 64],
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    unreachable!("the server loop ends only with the process")
}

/// The four sample sets.
pub(super) struct Figures {
    pub(super) direct_call: Vec<Duration>,
    pub(super) rpc_route: Vec<Duration>,
    pub(super) direct_http: Vec<Duration>,
    pub(super) proxied: Vec<Duration>,
}

type Http = Client<HttpConnector, Empty<Bytes>>;

async fn get(client: &Http, url: &str, token: Option<&str>) -> usize {
    let mut request = hyper::Request::get(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let answer = client
        .request(request.body(Empty::new()).expect("a request"))
        .await
        .expect("an answer");
    assert!(answer.status().is_success(), "{url}: {}", answer.status());
    answer
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes()
        .len()
}

/// Runs the fleet (kv over RPC, the plain server proxied) with its face,
/// and times each pair of sides in alternating rounds.
pub(super) async fn figures(dir: &Path, kv: &Path, me: &Path) -> Figures {
    let toml = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\
         [plugins.kv]\ncmd = [{kv:?}]\nhttp = {{ prefix = \"/kv\" }}\n\
         [plugins.web]\ncmd = [{me:?}]\nprotocol = \"none\"\nport = \"auto\"\n\
         env = {{ {SERVE} = \"1\" }}\nhttp = {{ prefix = \"/web\" }}\n\
         health = {{ tcp = \"127.0.0.1:${{port}}\", interval = \"50ms\" }}\nready = \"health\"\n",
        kv = kv.display().to_string(),
        me = me.display().to_string(),
    );
    let fleet = super::fleet(dir, &toml);
    std::fs::create_dir_all(&fleet.supervisor.log_dir).expect("log dir");
    let (supervisor, _done) =
        corral::supervisor::start(&fleet, Arc::new(corral::os::cgroup::Cgroups::none()));
    let http = fleet.supervisor.http.clone().expect("[http]");
    let listener = corral::http::HttpListener::bind(&http)
        .await
        .expect("bind the face");
    let settings = Arc::new(fleet.supervisor.clone());
    let face = corral::http::HttpServer::start(
        listener,
        (Arc::clone(&settings), &fleet.file),
        &http,
        supervisor.clone(),
    )
    .expect("the face");
    let kv = supervisor.plugin("kv").await.expect("kv");
    let web = supervisor.plugin("web").await.expect("web");
    super::wait_running(&kv, None).await;
    super::wait_running(&web, None).await;
    let port = web.presence().1.expect("web's port");
    let token = std::fs::read_to_string(settings.http_token_file()).expect("the token");
    let token = token.trim();
    let base = face.url().trim_end_matches('/').to_string();
    let value = "x".repeat(62);
    super::call_json(&kv, "set", serde_json::json!({"key": "k", "value": value})).await;

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Http = Client::builder(TokioExecutor::new()).build(connector);
    let route = format!("{base}/plugins/kv/kv/k");
    let proxied = format!("{base}/plugins/web/web/hello");
    let direct = format!("http://127.0.0.1:{port}/web/hello");
    // Warm the connections, and check each side answers what it should.
    assert!(get(&client, &route, Some(token)).await > 64);
    assert_eq!(get(&client, &proxied, Some(token)).await, 64);
    assert_eq!(get(&client, &direct, None).await, 64);

    let mut f = Figures {
        direct_call: Vec::with_capacity(REQUESTS),
        rpc_route: Vec::with_capacity(REQUESTS),
        direct_http: Vec::with_capacity(REQUESTS),
        proxied: Vec::with_capacity(REQUESTS),
    };
    let get_k = serde_json::json!({"key": "k"});
    for _ in 0..ROUNDS {
        for _ in 0..REQUESTS / ROUNDS {
            let t = Instant::now();
            super::call_json(&kv, "get", get_k.clone()).await;
            f.direct_call.push(t.elapsed());
        }
        for _ in 0..REQUESTS / ROUNDS {
            let t = Instant::now();
            get(&client, &route, Some(token)).await;
            f.rpc_route.push(t.elapsed());
        }
        for _ in 0..REQUESTS / ROUNDS {
            let t = Instant::now();
            get(&client, &direct, None).await;
            f.direct_http.push(t.elapsed());
        }
        for _ in 0..REQUESTS / ROUNDS {
            let t = Instant::now();
            get(&client, &proxied, Some(token)).await;
            f.proxied.push(t.elapsed());
        }
    }
    face.shutdown(Duration::from_secs(1)).await;
    supervisor.shutdown().await;
    f
}
