//! The `run` command's exit code from how the task ended (SPEC §9): 0 every SLA passed, 2 an
//! SLA failed (as Rally), 3 stopped by the user or a signal, 1 any other failure. Pure, so
//! each case is a unit test; storing the results is judged by the caller before this.

use super::exit;
use crate::engine::{Abort, TaskOutcome};

/// The code, and what to say on standard error when it is a failure.
#[derive(Debug, PartialEq)]
pub struct Verdict {
    pub code: u8,
    pub error: Option<String>,
}

pub fn verdict(outcome: &TaskOutcome) -> Verdict {
    let fail = |error: String| Verdict {
        code: exit::FAILURE,
        error: Some(error),
    };
    // A stop asked for by a person ends the run as stopped, whatever it left unfinished.
    if outcome.abort != Some(Abort::User) {
        // Results that ran and could not be fetched (their agent died with them and nobody
        // could run them again) make the run a failure, whatever the SLA says of the rest.
        let missing: usize = outcome
            .workloads
            .iter()
            .filter_map(|w| w.distributed.as_ref())
            .map(|d| d.missing.len())
            .sum();
        if missing > 0 {
            return fail(format!(
                "results are missing ({missing} report line{} above: `Missing results`)",
                if missing == 1 { "" } else { "s" }
            ));
        }
        // A workload the runner could not carry out (every agent lost, none alive) is the
        // tool's failure, not the service's: CI must be able to tell the two apart.
        if let Some((i, e)) = outcome
            .workloads
            .iter()
            .enumerate()
            .find_map(|(i, w)| w.runner_error.as_ref().map(|e| (i, e)))
        {
            return fail(format!("workload {} could not run: {e}", i + 1));
        }
    }
    let code = match outcome.abort {
        Some(Abort::User) => exit::STOPPED,
        _ if !outcome.pass_sla => exit::SLA_FAILED,
        _ => exit::OK,
    };
    Verdict { code, error: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{DistributedSummary, TaskStatus, WorkloadInfo, WorkloadReport};

    fn workload(pass: bool) -> WorkloadReport {
        WorkloadReport {
            info: WorkloadInfo {
                index: 0,
                count: 1,
                subtask: "s".into(),
                position: 0,
                scenario: "Dummy.dummy".into(),
                runner: "constant".into(),
                total: Some(10),
                expected_duration: None,
                target_rate: None,
                max_concurrency: None,
            },
            stats: crate::stats::WorkloadStats::new(Vec::new().into()).table(),
            sla: Vec::new(),
            pass_sla: pass,
            iterations: 10,
            failures: 0,
            load_duration: 1.0,
            full_duration: 1.0,
            start_time: None,
            hooks: Vec::new(),
            sources: Vec::new(),
            errors: Vec::new(),
            distributed: None,
            connections: None,
            runner_error: None,
        }
    }

    fn outcome(abort: Option<Abort>, workloads: Vec<WorkloadReport>) -> TaskOutcome {
        TaskOutcome {
            uuid: "u".into(),
            status: TaskStatus::Finished,
            pass_sla: workloads.iter().all(|w| w.pass_sla),
            abort,
            workloads,
        }
    }

    fn all_lost() -> WorkloadReport {
        let mut w = workload(false);
        w.runner_error = Some("every agent of the workload was lost".into());
        w
    }

    fn missing() -> WorkloadReport {
        let mut w = workload(true);
        w.distributed = Some(DistributedSummary {
            agents: vec!["a".into()],
            lost: vec!["a".into()],
            reissued: 0,
            duplicates: 0,
            missing: vec!["chunk 3 of agent a: gone".into()],
            returned: Vec::new(),
            reshares: Vec::new(),
        });
        w
    }

    #[test]
    fn passed_failed_and_stopped() {
        assert_eq!(verdict(&outcome(None, vec![workload(true)])).code, exit::OK);
        let failed = outcome(None, vec![workload(true), workload(false)]);
        assert_eq!(verdict(&failed).code, exit::SLA_FAILED);
        assert_eq!(
            verdict(&outcome(Some(Abort::Sla), vec![workload(false)])).code,
            exit::SLA_FAILED
        );
        let stopped = outcome(Some(Abort::User), vec![workload(false)]);
        assert_eq!(
            verdict(&stopped),
            Verdict {
                code: exit::STOPPED,
                error: None
            }
        );
    }

    /// Agents lost beyond recovery are the tool's failure (1), even though the workload also
    /// carries Rally's failed `something_went_wrong` row.
    #[test]
    fn a_workload_whose_agents_were_all_lost_is_a_failure_not_a_failed_sla() {
        let v = verdict(&outcome(None, vec![workload(true), all_lost()]));
        assert_eq!(v.code, exit::FAILURE);
        assert_eq!(
            v.error.as_deref(),
            Some("workload 2 could not run: every agent of the workload was lost")
        );
        // A person's stop wins: what it cut short is not a failure.
        let stopped = outcome(Some(Abort::User), vec![all_lost()]);
        assert_eq!(verdict(&stopped).code, exit::STOPPED);
    }

    #[test]
    fn missing_results_are_a_failure_whatever_the_sla() {
        let v = verdict(&outcome(None, vec![missing()]));
        assert_eq!(v.code, exit::FAILURE);
        assert!(v.error.unwrap().contains("1 report line above"));
        assert_eq!(
            verdict(&outcome(Some(Abort::User), vec![missing()])).code,
            exit::STOPPED
        );
    }
}
