//! What `plugin check` reports, as types: the JSON it prints with `--json` and the text
//! lines it prints without.

use serde::Serialize;

/// The whole report.
#[derive(Debug, Serialize)]
pub(super) struct CheckReport {
    pub plugin: String,
    pub contract: String,
    pub imports: Vec<String>,
    pub limits: LimitsReport,
    pub cases: Vec<CaseReport>,
    pub problems: Vec<String>,
}

/// The limits each call ran under (a job's).
#[derive(Debug, Serialize)]
pub(super) struct LimitsReport {
    pub fuel: u64,
    pub memory_bytes: u64,
    pub deadline_ms: u64,
}

/// What one call used, against the limits.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CallUsage {
    pub fuel: u64,
    pub fuel_share: f64,
    pub memory_bytes: u64,
    pub memory_share: f64,
    pub ms: f64,
}

/// How one call of a case went: what it used, or how it failed in the sandbox.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(super) enum CallOutcome {
    Used(CallUsage),
    Failed { error: String },
}

/// One error of a refusal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct RefusalEntry {
    pub pointer: String,
    pub message: String,
}

/// Which call refused the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RefusedBy {
    Validate,
    Plan,
}

/// The policy's verdict on a case's plan: "passes", or each violation.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(super) enum PolicyVerdict {
    Passes(&'static str),
    Refused(Vec<String>),
}

impl PolicyVerdict {
    pub const PASSES: PolicyVerdict = PolicyVerdict::Passes("passes");

    /// For the text report: "passes", or how many problems it lists.
    pub fn summary(&self) -> String {
        match self {
            PolicyVerdict::Passes(verdict) => (*verdict).to_owned(),
            PolicyVerdict::Refused(problems) => format!("refused ({} problems below)", problems.len()),
        }
    }
}

/// One case: each call's usage, then the refusal or the plan's verdicts, as far as it got.
#[derive(Debug, Default, Serialize)]
pub(super) struct CaseReport {
    pub case: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_frames: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validate: Option<CallOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<CallOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Vec<RefusalEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_by: Option<RefusedBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyVerdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl CaseReport {
    /// The case as one line of text.
    pub fn line(&self) -> String {
        let share = |value: f64| format!("{:.1}%", value * 100.0);
        let call = |name: &str, outcome: &Option<CallOutcome>| match outcome {
            Some(CallOutcome::Failed { .. }) => format!("{name} failed (below)"),
            Some(CallOutcome::Used(usage)) => {
                format!("{name} fuel {} memory {}", share(usage.fuel_share), share(usage.memory_share))
            }
            None => format!("{name} fuel - memory -"),
        };
        let mut line = format!("{}: {}", self.case, call("validate", &self.validate));
        if self.plan.is_some() {
            line += &format!("; {}", call("plan", &self.plan));
        }
        if let Some(refused) = &self.refused {
            let listed = br_engine::job::list(refused.iter().map(|e| (e.pointer.as_str(), e.message.as_str())));
            let by = if self.refused_by == Some(RefusedBy::Plan) { "no plan" } else { "refused" };
            return format!("{line}; {by}: {listed}");
        }
        if let Some(policy) = &self.policy {
            line += &format!("; policy: {}; output: {}", policy.summary(), self.output.as_deref().unwrap_or("-"));
            if let Some(frames) = self.frames {
                line += &format!(" ({frames} frames)");
            }
        }
        line
    }
}
