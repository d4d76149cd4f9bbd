//! The worker simulator speaks the OpenAI/vLLM protocol Gatehouse relies on, labels itself, and
//! injects the faults the gateway must survive.

use std::time::Duration;

use gatehouse::simulator::llm::{SIMULATOR_LABEL, Simulator, SimulatorConfig};
use serde_json::{Value, json};

use crate::helpers::eventually;

fn start(tweak: impl FnOnce(&mut SimulatorConfig)) -> (String, actix_web::dev::ServerHandle) {
    let mut config = SimulatorConfig::llm("127.0.0.1:0");
    config.ttft_ms = 5;
    config.tpot_ms = 1;
    tweak(&mut config);
    let sim = Simulator::start(config).unwrap();
    let handle = sim.server.handle();
    actix_rt::spawn(sim.server);
    (format!("http://127.0.0.1:{}", sim.port), handle)
}

fn chat(stream: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "messages": [{ "role": "user", "content": "Say something about fair queues" }],
        "max_tokens": 100,
        "stream": stream,
    });
    if include_usage {
        body["stream_options"] = json!({ "include_usage": true });
    }
    body
}

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(str::to_owned).collect()
}

#[actix_web::test]
async fn models_health_and_labels() {
    let (base, _h) = start(|_| {});
    assert_eq!(reqwest::get(format!("{base}/health")).await.unwrap().status(), 200);
    let models: Value = reqwest::get(format!("{base}/v1/models")).await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "Qwen/Qwen2.5-7B-Instruct");
    assert_eq!(models["data"][0]["owned_by"], SIMULATOR_LABEL);
}

#[actix_web::test]
async fn non_streaming_completions_carry_usage_and_are_deterministic() {
    let (base, _h) = start(|_| {});
    let http = reqwest::Client::new();
    let a: Value = http.post(format!("{base}/v1/chat/completions")).json(&chat(false, false)).send().await.unwrap().json().await.unwrap();
    let b: Value = http.post(format!("{base}/v1/chat/completions")).json(&chat(false, false)).send().await.unwrap().json().await.unwrap();
    assert_eq!(a["object"], "chat.completion");
    assert_eq!(a["system_fingerprint"], SIMULATOR_LABEL);
    let text = a["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with("(simulated)"));
    assert_eq!(text, b["choices"][0]["message"]["content"].as_str().unwrap(), "same prompt, same text");
    let words = text.split(' ').count() as u64;
    assert_eq!(a["usage"]["completion_tokens"], words);
    assert_eq!(a["usage"]["prompt_tokens"], 5);
    let legacy: Value = http
        .post(format!("{base}/v1/completions"))
        .json(&json!({ "model": "Qwen/Qwen2.5-7B-Instruct", "prompt": "Once upon a time", "max_tokens": 3 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(legacy["object"], "text_completion");
    assert_eq!(legacy["usage"]["completion_tokens"], 3);
    assert_eq!(legacy["choices"][0]["finish_reason"], "length");
}

#[actix_web::test]
async fn streaming_sends_usage_only_when_asked() {
    let (base, _h) = start(|_| {});
    let http = reqwest::Client::new();
    for include_usage in [false, true] {
        let r = http.post(format!("{base}/v1/chat/completions")).json(&chat(true, include_usage)).send().await.unwrap();
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let body = r.text().await.unwrap();
        let events = events(&body);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let usage_chunks: Vec<&Value> = chunks.iter().filter(|c| c["usage"].is_object()).collect();
        if include_usage {
            assert_eq!(usage_chunks.len(), 1);
            assert_eq!(usage_chunks[0]["choices"], json!([]), "the usage chunk has no choices");
            let streamed = chunks.iter().filter(|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|s| !s.is_empty())).count();
            assert_eq!(usage_chunks[0]["usage"]["completion_tokens"], streamed as u64);
        } else {
            assert!(usage_chunks.is_empty());
            assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        }
    }
}

#[actix_web::test]
async fn unknown_models_and_bad_bodies_get_openai_errors() {
    let (base, _h) = start(|_| {});
    let http = reqwest::Client::new();
    let r = http.post(format!("{base}/v1/chat/completions")).json(&json!({ "model": "gpt-9", "messages": [] })).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http.post(format!("{base}/v1/chat/completions")).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].is_string());
}

#[actix_web::test]
async fn faults_error_rate_and_dying_mid_stream() {
    let (base, _h) = start(|c| c.error_rate = 1.0);
    let r = reqwest::Client::new().post(format!("{base}/v1/chat/completions")).json(&chat(false, false)).send().await.unwrap();
    assert_eq!(r.status(), 500);

    let (base, _h) = start(|c| c.die_after_tokens = Some(3));
    let r = reqwest::Client::new().post(format!("{base}/v1/chat/completions")).json(&chat(true, true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let result = r.text().await;
    assert!(result.is_err() || !result.unwrap().contains("[DONE]"), "the stream ends without [DONE]");

    let (base, _h) = start(|c| c.hang = true);
    let http = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    assert!(http.get(format!("{base}/health")).send().await.is_err(), "a hung worker never answers");

    let (base, _h) = start(|c| c.slow_start_ms = 300);
    let started = std::time::Instant::now();
    let r = reqwest::Client::new().post(format!("{base}/v1/chat/completions")).json(&chat(false, false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300), "slow start delays the first byte");
}

#[actix_web::test]
async fn concurrency_limit_queues_requests_and_metrics_show_it() {
    let (base, _h) = start(|c| {
        c.max_concurrent = 1;
        c.ttft_ms = 400;
    });
    let http = reqwest::Client::new();
    let gauges = |running: u32, waiting: u32| {
        let url = format!("{base}/metrics");
        async move {
            let metrics = reqwest::get(url).await.unwrap().text().await.unwrap();
            metrics.contains(&format!("vllm:num_requests_running{{model_name=\"Qwen/Qwen2.5-7B-Instruct\"}} {running}\n"))
                && metrics.contains(&format!("vllm:num_requests_waiting{{model_name=\"Qwen/Qwen2.5-7B-Instruct\"}} {waiting}\n"))
        }
    };
    let first = actix_rt::spawn(http.post(format!("{base}/v1/chat/completions")).json(&chat(false, false)).send());
    assert!(eventually(Duration::from_secs(5), || gauges(1, 0)).await, "the first request runs");
    let second = actix_rt::spawn(http.post(format!("{base}/v1/chat/completions")).json(&chat(false, false)).send());
    assert!(eventually(Duration::from_secs(5), || gauges(1, 1)).await, "the second waits for the only slot while the first runs");
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gatehouse_simulator_requests_total 2"), "{metrics}");
    assert!(metrics.contains("vllm:num_requests_running{model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 0"));
}

#[actix_web::test]
async fn a_client_that_disconnects_frees_its_slot() {
    let (base, _h) = start(|c| {
        c.max_concurrent = 1;
        c.tpot_ms = 50;
    });
    let http = reqwest::Client::new();
    let r = http.post(format!("{base}/v1/chat/completions")).json(&chat(true, false)).send().await.unwrap();
    drop(r);
    let ok = eventually(Duration::from_secs(5), || async {
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("num_requests_running{model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 0")
    })
    .await;
    assert!(ok, "the slot was released");
}
