//! The `pods/exec` WebSocket protocol frame by frame, with a raw client offering only the
//! older `v4.channel.k8s.io` subprotocol (kubectl and kube-rs prefer v5).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube_apiserver_fixture::exec::ExecHandler;
use kube_apiserver_fixture::{ApiServer, Options};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_frames_carry_output_then_the_status_then_a_normal_close() {
    let server = ApiServer::start(Options {
        exec: Some(ExecHandler::new(|target| {
            let mut command = std::process::Command::new(&target.command[0]);
            command.args(&target.command[1..]);
            Ok(command)
        })),
        ..Options::default()
    })
    .await
    .unwrap();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "x"}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(server.client().unwrap(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();

    let url = format!(
        "ws://{}/api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command=echo+out%3B+echo+err+%3E%262%3B+exit+2&stdout=true&stderr=true",
        server.address()
    );
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v4.channel.k8s.io".parse().unwrap(),
    );
    let stream = tokio::net::TcpStream::connect(server.address())
        .await
        .unwrap();
    let (mut socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(
        response.headers()["Sec-WebSocket-Protocol"],
        "v4.channel.k8s.io"
    );

    let mut frames: Vec<(u8, Vec<u8>)> = Vec::new();
    let close = loop {
        let message = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("a frame in time")
            .expect("the stream stays open until the close")
            .unwrap();
        match message {
            Message::Binary(data) => frames.push((data[0], data[1..].to_vec())),
            Message::Close(frame) => break frame,
            _ => {}
        }
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Normal));
    let _ = socket.close(None).await;
    // The opening empty frame on stdout, then output, and the status last.
    assert_eq!(frames.first(), Some(&(1, Vec::new())));
    let on = |channel: u8| -> String {
        frames
            .iter()
            .filter(|(c, _)| *c == channel)
            .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
            .collect()
    };
    assert_eq!(on(1), "out\n");
    assert_eq!(on(2), "err\n");
    let (last_channel, last) = frames.last().unwrap();
    assert_eq!(*last_channel, 3);
    let status: serde_json::Value = serde_json::from_slice(last).unwrap();
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(
        status["details"]["causes"][0],
        serde_json::json!({"reason": "ExitCode", "message": "2"})
    );
}
