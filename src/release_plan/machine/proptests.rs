//! Property tests: random event sequences applied to random plans must keep the invariants
//! and reach every kept transition.

use proptest::prelude::*;

use super::tests::*;
use super::*;

/// A random event, resolved against the plan it is applied to.
#[derive(Debug, Clone)]
enum Gen {
    /// Target (an allowed one unless the flag), actor (mostly the manager).
    SetStatus(usize, usize, bool),
    Vote(usize, bool),
    Execute(usize, usize, bool),
    Skip(usize, usize, bool),
    Retry(usize, usize, bool),
    TaskStarted(usize, i64),
    TaskStartFailed(usize, bool),
    TaskFinished(usize, usize, bool),
    Callback(usize, bool, bool),
    Edit(bool, bool),
    Tick,
}

fn gen_event() -> impl Strategy<Value = Gen> {
    prop_oneof![
        4 => (0..14usize, 0..8usize, any::<bool>()).prop_map(|(t, a, any)| Gen::SetStatus(t, a, any)),
        2 => (0..5usize, any::<bool>()).prop_map(|(a, b)| Gen::Vote(a, b)),
        5 => (0..3usize, 0..8usize, 0..4u8).prop_map(|(j, a, k)| Gen::Execute(j, a, k > 0)),
        2 => (0..3usize, 0..8usize, 0..4u8).prop_map(|(j, a, k)| Gen::Skip(j, a, k > 0)),
        1 => (0..3usize, 0..8usize, 0..4u8).prop_map(|(j, a, k)| Gen::Retry(j, a, k > 0)),
        1 => (0..3usize, 1..5i64).prop_map(|(j, t)| Gen::TaskStarted(j, t)),
        1 => (0..3usize, any::<bool>()).prop_map(|(j, r)| Gen::TaskStartFailed(j, r)),
        3 => (0..3usize, 0..12usize, 0..4u8).prop_map(|(j, s, m)| Gen::TaskFinished(j, s, m > 0)),
        3 => (0..4usize, 0..4u8, any::<bool>()).prop_map(|(e, c, r)| Gen::Callback(e, c > 0, r)),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(a, w)| Gen::Edit(a, w)),
        2 => Just(Gen::Tick),
    ]
}

fn resolve(g: &Gen, p: &ReleasePlan) -> Event {
    let job_id = |j: usize| {
        p.jobs
            .get(j)
            .map_or_else(|| format!("missing-{j}"), |x| x.id.clone())
    };
    let kind = |j: usize, right: bool| {
        let k = p.jobs.get(j).map_or(JobKind::Text, |x| x.kind);
        match (k, right) {
            (k, true) => k,
            (JobKind::Text, false) => JobKind::Workflow,
            (JobKind::Workflow, false) => JobKind::Text,
        }
    };
    match g {
        Gen::SetStatus(t, a, any) => {
            let allowed: Vec<Status> = Status::ALL
                .iter()
                .copied()
                .filter(|to| status_api_allows(p.status, *to))
                .collect();
            let target = if *any || allowed.is_empty() {
                Status::ALL[*t]
            } else {
                allowed[*t % allowed.len()]
            };
            Event::SetStatus {
                actor: actor(ACTORS.get(*a).copied().unwrap_or(MANAGER)),
                target,
            }
        }
        Gen::Vote(a, approve) => Event::Vote {
            actor: actor(ACTORS[*a]),
            approve: *approve,
            comment: String::new(),
        },
        Gen::Execute(j, a, k) => Event::Execute {
            actor: actor(ACTORS.get(*a).copied().unwrap_or(MANAGER)),
            job_id: job_id(*j),
            kind: kind(*j, *k),
            remark: "r".into(),
        },
        Gen::Skip(j, a, k) => Event::Skip {
            actor: actor(ACTORS.get(*a).copied().unwrap_or(MANAGER)),
            job_id: job_id(*j),
            kind: kind(*j, *k),
            remark: String::new(),
        },
        Gen::Retry(j, a, k) => Event::Retry {
            actor: actor(ACTORS.get(*a).copied().unwrap_or(MANAGER)),
            job_id: job_id(*j),
            kind: kind(*j, *k),
        },
        Gen::TaskStarted(j, t) => Event::TaskStarted {
            job_id: job_id(*j),
            workflow_key: "wf".into(),
            task_id: *t,
        },
        Gen::TaskStartFailed(j, revert) => Event::TaskStartFailed {
            job_id: job_id(*j),
            reason: "x".into(),
            revert_to: if *revert {
                p.jobs.get(*j).map(|x| ReleaseJob {
                    status: JobStatus::Todo,
                    ..x.clone()
                })
            } else {
                None
            },
        },
        Gen::TaskFinished(j, s, matching) => Event::TaskFinished {
            job_id: job_id(*j),
            task_id: if *matching {
                p.jobs.get(*j).map_or(1, |x| x.spec.task_id)
            } else {
                99
            },
            // Mostly `passed`.
            task_status: TASK_STATUSES.get(*s).copied().unwrap_or(TaskStatus::Passed),
        },
        Gen::Callback(e, code_ok, ok) => Event::Callback {
            actor: actor("u-other"),
            // Mostly the event the plan waits for.
            hook_event: HookEvent::ALL
                .iter()
                .copied()
                .find(|h| h.wait_status() == p.status && *e > 0)
                .unwrap_or(HookEvent::ALL[*e % 3]),
            instance_code: if *code_ok {
                p.instance_code.clone()
            } else {
                "0000000000000000".into()
            },
            result: if *ok {
                CallbackResult::Success
            } else {
                CallbackResult::Failed
            },
            reason: "no".into(),
        },
        Gen::Edit(approval, window) => Event::Edit {
            actor: actor(MANAGER),
            content: Content {
                name: "edited".into(),
                manager: "manager".into(),
                manager_id: MANAGER.into(),
                manager_identity_type: "system".into(),
                start_time: if *window { T0_MS / 1000 } else { 0 },
                end_time: if *window { T0_MS / 1000 + 20_000 } else { 0 },
                schedule_execute_time: if *window { T0_MS / 1000 + 3_000 } else { 0 },
                description: String::new(),
                approval: approval.then(|| native(1, 10)),
                jobs: p
                    .jobs
                    .iter()
                    .map(|j| NewJob {
                        fresh_id: format!("{}-new", j.id),
                        name: j.name.clone(),
                        manager: String::new(),
                        manager_id: String::new(),
                        kind: j.kind,
                        spec: j.spec.clone(),
                    })
                    .collect(),
            },
        },
        Gen::Tick => Event::Tick,
    }
}

fn gen_plan() -> impl Strategy<Value = ReleasePlan> {
    let jobs = proptest::collection::vec(any::<bool>(), 0..3);
    (jobs, 0..3usize, gen_hooks(), any::<bool>(), 0..28usize).prop_map(
        |(kinds, approval, hooks, window, status)| {
            let jobs = kinds
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    job(
                        i,
                        if *w { JobKind::Workflow } else { JobKind::Text },
                        JobStatus::Unset,
                    )
                })
                .collect();
            let mut p = plan(jobs);
            p.approval = match approval {
                0 => None,
                1 => Some(native(1, 0)),
                _ => Some(native(2, 30)),
            };
            p.hook_settings = Some(hooks);
            if window {
                p.start_time = T0_MS / 1000 - 10;
                p.end_time = T0_MS / 1000 + 30_000;
                p.schedule_execute_time = T0_MS / 1000 + 5_000;
            }
            // Half the time start from planning, else from any status.
            if let Some(st) = status.checked_sub(14) {
                p.status = Status::ALL[st];
            }
            p
        },
    )
}

fn times(p: &ReleasePlan) -> [i64; 5] {
    [
        p.planning_time,
        p.approval_time,
        p.executing_time,
        p.success_time,
        p.finish_planning_time,
    ]
}

/// Apply a random sequence, checking the properties at every step; returns the status
/// changes seen.
fn check_sequence(
    start: ReleasePlan,
    hooks: &HookSnapshot,
    events: &[(Gen, i64)],
) -> Result<Vec<(Status, Status)>, TestCaseError> {
    let mut seen = Vec::new();
    let mut p = start;
    let mut now_ms = T0_MS;
    for (g, advance) in events {
        now_ms += advance * 1000;
        let now = now_ms / 1000;
        let ev = resolve(g, &p);
        let Ok(out) = step(&p, &ev, &ctx_at(now_ms, hooks)) else {
            continue;
        };
        let mut cur = p.status;
        for (from, to) in &out.transitions {
            prop_assert_eq!(*from, cur, "transitions must chain");
            prop_assert!(
                is_kept_transition(*from, *to),
                "{} -> {} is not in the table ({:?})",
                from,
                to,
                ev
            );
            cur = *to;
            match to {
                Status::Executing => prop_assert_eq!(out.plan.executing_time, now),
                Status::Success => prop_assert_eq!(out.plan.success_time, now),
                Status::Planning => prop_assert_eq!(out.plan.planning_time, now),
                _ => {}
            }
            if *from == Status::WaitForApproval
                && matches!(
                    to,
                    Status::Executing
                        | Status::WaitForExecuteExternalCheck
                        | Status::Denied
                        | Status::Timeout
                )
            {
                prop_assert_eq!(out.plan.approval_time, now);
            }
            // Completion (not the owner's forced success) needs every job finished.
            if *from == Status::Executing
                && matches!(to, Status::Success | Status::WaitForAllDoneExternalCheck)
                && !matches!(ev, Event::SetStatus { .. })
            {
                prop_assert!(
                    out.plan
                        .jobs
                        .iter()
                        .all(|j| matches!(j.status, JobStatus::Done | JobStatus::Skipped)),
                    "success with unfinished jobs"
                );
            }
            seen.push((*from, *to));
        }
        prop_assert_eq!(cur, out.plan.status);
        if p.status.is_terminal() {
            prop_assert_eq!(out.plan.status, p.status, "left a terminal status");
        }
        let entered = |s: Status| out.transitions.iter().any(|(_, to)| *to == s);
        if out.plan.executing_time != p.executing_time {
            prop_assert!(entered(Status::Executing));
        }
        if out.plan.success_time != p.success_time {
            prop_assert!(entered(Status::Success));
        }
        for (before, after) in times(&p).iter().zip(times(&out.plan)) {
            prop_assert!(after >= *before, "a timestamp moved backwards");
        }
        // A saved-but-failed step (an execute after the window) counts too.
        p = out.plan;
    }
    Ok(seen)
}

fn gen_hooks() -> impl Strategy<Value = HookSnapshot> {
    (0..4u8, 0..4u8, proptest::collection::vec(0..3usize, 0..4)).prop_map(
        |(enable, call_back, events)| HookSnapshot {
            enable: enable > 0,
            enable_call_back: call_back > 0,
            hook_events: events.into_iter().map(|e| HookEvent::ALL[e]).collect(),
        },
    )
}

/// Seconds between events: mostly short, sometimes past windows and deadlines.
fn gen_advance() -> impl Strategy<Value = i64> {
    prop_oneof![8 => 0..300i64, 1 => 0..40_000i64]
}

type Sequence = (ReleasePlan, HookSnapshot, Vec<(Gen, i64)>);

fn sequences() -> impl Strategy<Value = Sequence> {
    (
        gen_plan(),
        gen_hooks(),
        proptest::collection::vec((gen_event(), gen_advance()), 1..60),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random event sequences: only table transitions, terminal states stay terminal,
    /// timestamps are set when their state is entered and never move backwards.
    #[test]
    fn random_sequences_respect_the_table((start, hooks, events) in sequences()) {
        check_sequence(start, &hooks, &events)?;
    }
}

/// The generator is good enough to reach (nearly) every transition of the table, so the
/// property above is not vacuous.
#[test]
fn random_sequences_reach_the_table() {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    // A fixed seed: the coverage check must not flake.
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(Config::with_cases(4000), rng);
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    runner
        .run(&sequences(), |(start, hooks, events)| {
            let got = check_sequence(start, &hooks, &events)?;
            seen.lock()
                .map_err(|_| TestCaseError::fail("poisoned"))?
                .extend(got);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = seen.into_inner().unwrap_or_default();
    let missing: Vec<String> = Status::ALL
        .iter()
        .flat_map(|f| Status::ALL.iter().map(move |t| (*f, *t)))
        .filter(|(f, t)| is_kept_transition(*f, *t) && !seen.contains(&(*f, *t)))
        .map(|(f, t)| format!("{f} -> {t}"))
        .collect();
    assert!(missing.is_empty(), "transitions never reached: {missing:?}");
}
