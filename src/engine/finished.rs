//! The engine's port for "a task started by a release job reached a final status".
//!
//! The engine publishes here and depends on nobody above it; the release-plan side subscribes
//! when the state is assembled (see [`crate::state::AppState::build`]) and moves its job on.
//! Listeners are awaited in the order they subscribed, so a task's end is applied before the
//! runner moves on, as when the engine called the release plan directly; they must be
//! idempotent (the recovery path and the cancel path may report a task again).

use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::state::AppState;
use crate::workflow::ReleaseRef;
use crate::workflow::task::{Status, Task};

/// A task started by a release job that reached a final status.
#[derive(Debug, Clone, Copy)]
pub struct TaskFinished<'a> {
    pub release: &'a ReleaseRef,
    pub task_id: i64,
    pub status: Status,
}

/// Someone who wants to know when a release job's task finished.
#[async_trait]
pub trait TaskFinishedListener: Send + Sync {
    async fn task_finished(&self, state: &AppState, event: TaskFinished<'_>);
}

/// The subscribers (`state.task_finished`).
#[derive(Default)]
pub struct TaskFinishedPort {
    listeners: RwLock<Vec<Arc<dyn TaskFinishedListener>>>,
}

impl TaskFinishedPort {
    pub fn subscribe(&self, listener: Arc<dyn TaskFinishedListener>) {
        self.listeners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(listener);
    }

    /// Tell every subscriber that `task` ended with `status`, if a release job started it.
    pub async fn publish(&self, state: &AppState, task: &Task, status: Status) {
        let Some(release) = &task.release else {
            return;
        };
        let event = TaskFinished {
            release,
            task_id: task.task_id,
            status,
        };
        let listeners = self
            .listeners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for l in listeners {
            l.task_finished(state, event).await;
        }
    }
}
