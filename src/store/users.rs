//! Users and their API tokens (stored only as SHA-256 hashes).

use crate::limits::Paging;
use serde::{Deserialize, Serialize};

use super::{Backend, Dir, Filter, FindOptions, StoreResult, Typed, Update};

/// A stored user. `id` is the user's `uid`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub account: String,
    pub name: String,
    pub identity_type: String,
    pub is_admin: bool,
    /// Hex SHA-256 of the current API token.
    pub token_hash: String,
    pub created_at: i64,
}

/// Queries over the `users` collection.
#[derive(Clone)]
pub struct UserStore {
    users: Typed<User>,
}

impl UserStore {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            users: Typed::new(backend, "users"),
        }
    }

    /// Insert a user; a duplicate (account, identity_type) is `StoreError::Duplicate`.
    pub async fn insert(&self, user: &User) -> StoreResult<()> {
        self.users.insert(user).await
    }

    pub async fn get(&self, uid: &str) -> StoreResult<Option<User>> {
        self.users.get(uid).await
    }

    pub async fn by_token_hash(&self, hash: &str) -> StoreResult<Option<User>> {
        self.users.find_one(&Filter::eq("token_hash", hash)).await
    }

    pub async fn by_account(
        &self,
        account: &str,
        identity_type: &str,
    ) -> StoreResult<Option<User>> {
        self.users
            .find_one(
                &Filter::eq("account", account).and(Filter::eq("identity_type", identity_type)),
            )
            .await
    }

    /// One page of users, oldest first, and the total.
    pub async fn page(&self, p: Paging) -> StoreResult<(Vec<User>, u64)> {
        let opts = FindOptions::sort("created_at", Dir::Asc).page(p.num, p.size);
        self.users.page(&Filter::All, &opts).await
    }

    /// Replace the token hash; false when the user does not exist.
    pub async fn set_token_hash(&self, uid: &str, hash: &str) -> StoreResult<bool> {
        self.users
            .update_one(&Filter::id(uid), &Update::new().set("token_hash", hash))
            .await
    }

    /// Make an existing user an admin with the given token hash (bootstrap).
    pub async fn make_admin(&self, uid: &str, hash: &str) -> StoreResult<bool> {
        self.users
            .update_one(
                &Filter::id(uid),
                &Update::new().set("token_hash", hash).set("is_admin", true),
            )
            .await
    }

    pub async fn delete(&self, uid: &str) -> StoreResult<bool> {
        Ok(self.users.delete(&Filter::id(uid)).await? > 0)
    }
}
