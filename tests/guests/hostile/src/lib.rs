//! A guest that misbehaves on request, to prove the sandbox's limits. The blueprint
//! text selects the misbehaviour; anything else is refused politely.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ world: "guest", path: "../../../wit" });

use blueprint::runner::host::{log, LogLevel};
use blueprint::runner::types as wit;

struct HostileGuest;

fn refusal(message: String) -> Vec<wit::ValidationError> {
    vec![wit::ValidationError { pointer: String::new(), code: wit::ErrorCode::NotAllowed, message }]
}

impl Guest for HostileGuest {
    fn validate(blueprint: String) -> Result<wit::Validated, Vec<wit::ValidationError>> {
        log(LogLevel::Info, &format!("hostile guest asked to {blueprint}"));
        match blueprint.as_str() {
            "spin" => {
                // Pure computation the optimiser cannot remove: only fuel stops it.
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "allocate" => {
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                for _ in 0..1024 {
                    chunks.push(vec![1u8; 1024 * 1024]);
                    log(LogLevel::Debug, &format!("holding {} MiB", chunks.len()));
                }
                Err(refusal(format!("allocated {} MiB", chunks.len())))
            }
            "sleep" => {
                // A WASI sleep: the guest blocks in the host, where fuel does not count.
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Err(refusal("woke up".into()))
            }
            "huge-output" => Err(refusal("x".repeat(100 * 1024 * 1024))),
            "many-errors" => Err((0..200_000)
                .map(|i| wit::ValidationError { pointer: format!("/moves/{i}"), code: wit::ErrorCode::Timeline, message: "no".into() })
                .collect()),
            "panic" => panic!("the hostile guest panics on purpose"),
            "log-flood" => {
                for i in 0..100_000 {
                    log(LogLevel::Warn, &format!("flood line {i} {}", "y".repeat(1000)));
                }
                println!("{}", "z".repeat(1 << 20));
                Err(refusal("flooded".into()))
            }
            "bad-pointer" => Err(vec![wit::ValidationError {
                pointer: "not a pointer".into(),
                code: wit::ErrorCode::Timeline,
                message: "x".into(),
            }]),
            other => Err(refusal(format!("unknown misbehaviour {other:?}"))),
        }
    }
}

export!(HostileGuest);
