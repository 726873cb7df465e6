//! Black-box tests: a real server over a real socket, each test on both storage backends.
//! One test binary (modules below) so the suite links once.

#![expect(
    clippy::unwrap_used,
    reason = "a test or bench stops loudly on data it did not expect"
)]

mod harness;

mod auth_throttle;
mod authz;
mod build;
mod build_engine;
mod build_recipe;
mod build_templates;
mod clean_ups;
mod cli;
mod clusters;
mod delivery;
mod delivery_ecr;
mod delivery_from_env;
mod delivery_pipeline;
mod delivery_registry;
mod deploy_jobs;
mod engine;
mod engine_api;
mod engine_restart;
mod env_ownership;
mod env_placement;
mod environments;
mod environments_real;
mod foundation;
mod hook_egress;
mod kube_emulator;
mod kube_jobs;
mod kube_proxy;
mod limits;
mod net_hygiene;
mod null_as_zero;
mod openapi;
mod projects;
mod release_plan;
mod release_plan_hooks;
mod release_plan_scheduler;
mod release_plan_workflow;
mod request_timeout;
mod roles;
mod rollout_guards;
mod sandbox;
mod secrets_at_rest;
mod service_templates;
mod store_conformance;
mod ui;
mod ui_browser;
mod ui_logs;
mod ui_security;
mod ui_session;
mod wire;
mod workflow_e2e;
mod workflow_notify;
mod workflow_tasks;
mod workflows;
