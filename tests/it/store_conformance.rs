//! The storage conformance suite: the same cases on the embedded store and on MongoDB.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use zadig_server::store::lease::Leases;
use zadig_server::store::sequence::Sequences;
use zadig_server::store::{Dir, Filter, FindOptions, IndexSpec, StoreError, Update, to_doc};

use crate::backend_test;

fn doc(v: Value) -> zadig_server::store::Doc {
    to_doc(&v).expect("doc")
}

/// Run `f(a clone of shared, i)` for each `i` in `0..n` at once, each on its own task; the
/// results in `i` order.
async fn race<S, T, Fut>(n: i64, shared: &S, f: impl Fn(S, i64) -> Fut) -> Vec<T>
where
    S: Clone,
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(f(shared.clone(), i))).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a racer panicked"));
    }
    out
}

backend_test! {
    async fn crud(app) {
        let c = app.backend.collection("conf_crud");
        c.insert(doc(json!({"id": "a", "n": 1, "tags": ["x", "y"], "nested": {"s": "on"}}))).await.unwrap();
        c.insert(doc(json!({"id": "b", "n": 2, "tags": ["y"], "nested": {"s": "off"}}))).await.unwrap();
        let a = c.find_one(&Filter::id("a")).await.unwrap().expect("a");
        assert_eq!(a["n"], 1);
        assert_eq!(a["nested"]["s"], "on");
        assert!(a.get("_id").is_none(), "backend keys do not leak: {a:?}");
        assert_eq!(c.count(&Filter::contains("tags", "y")).await.unwrap(), 2);
        assert_eq!(c.count(&Filter::contains("tags", "x")).await.unwrap(), 1);
        assert_eq!(c.count(&Filter::eq("nested.s", "off")).await.unwrap(), 1);
        assert_eq!(c.count(&Filter::ne("nested.s", "off")).await.unwrap(), 1);
        assert_eq!(c.count(&Filter::eq("missing", Value::Null)).await.unwrap(), 2);
        assert_eq!(c.count(&Filter::is_in("id", ["a", "b", "z"])).await.unwrap(), 2);
        assert!(c.update_one(&Filter::id("a"), &Update::new().set("nested.s", "mid").inc("n", 5).push("tags", "z")).await.unwrap());
        let a = c.find_one(&Filter::id("a")).await.unwrap().expect("a");
        assert_eq!(a["n"], 6);
        assert_eq!(a["nested"]["s"], "mid");
        assert_eq!(a["tags"], json!(["x", "y", "z"]));
        assert!(c.update_one(&Filter::id("a"), &Update::new().unset("nested")).await.unwrap());
        assert!(c.find_one(&Filter::id("a")).await.unwrap().expect("a").get("nested").is_none());
        assert!(!c.update_one(&Filter::id("nope"), &Update::new().set("n", 1)).await.unwrap());
        assert_eq!(c.update_many(&Filter::All, &Update::new().set("flag", true)).await.unwrap(), 2);
        assert_eq!(c.count(&Filter::eq("flag", true)).await.unwrap(), 2);
        assert_eq!(c.delete_many(&Filter::id("a")).await.unwrap(), 1);
        assert!(c.find_one(&Filter::id("a")).await.unwrap().is_none());
        app.stop().await;
    }
}

backend_test! {
    async fn paging_and_sort(app) {
        let c = app.backend.collection("conf_page");
        for i in 0..25i64 {
            c.insert(doc(json!({"id": format!("d{i:02}"), "index": i, "group": i % 2, "created": 100 - i}))).await.unwrap();
        }
        let opts = FindOptions::sort("index", Dir::Desc).page(2, 10);
        let page: Vec<i64> = c.find(&Filter::All, &opts).await.unwrap().iter().map(|d| d["index"].as_i64().unwrap()).collect();
        assert_eq!(page, (5..15).rev().collect::<Vec<_>>());
        let last = c.find(&Filter::All, &FindOptions::sort("index", Dir::Desc).page(3, 10)).await.unwrap();
        assert_eq!(last.len(), 5);
        let odd = c.find(&Filter::eq("group", 1), &FindOptions::sort("created", Dir::Asc).limit(3)).await.unwrap();
        let idx: Vec<i64> = odd.iter().map(|d| d["index"].as_i64().unwrap()).collect();
        assert_eq!(idx, vec![23, 21, 19]);
        let range = c.count(&Filter::gte("index", 10).and(Filter::lt("index", 20))).await.unwrap();
        assert_eq!(range, 10);
        let or = c.count(&Filter::Or(vec![Filter::lte("index", 1), Filter::gt("index", 23)])).await.unwrap();
        assert_eq!(or, 3);
        app.stop().await;
    }
}

backend_test! {
    async fn uniqueness(app) {
        let ix = IndexSpec { collection: "conf_uniq".into(), name: "proj_name".into(), keys: vec!["project".into(), "name".into()], unique: true };
        app.backend.migrate(&[ix]).await.unwrap();
        let c = app.backend.collection("conf_uniq");
        c.insert(doc(json!({"id": "1", "project": "p", "name": "n"}))).await.unwrap();
        c.insert(doc(json!({"id": "2", "project": "q", "name": "n"}))).await.unwrap();
        let dup = c.insert(doc(json!({"id": "3", "project": "p", "name": "n"}))).await;
        assert!(matches!(dup, Err(StoreError::Duplicate(_))), "{dup:?}");
        let same_id = c.insert(doc(json!({"id": "1", "project": "z", "name": "z"}))).await;
        assert!(matches!(same_id, Err(StoreError::Duplicate(_))), "{same_id:?}");
        // A replace that would break the index is a duplicate too, and changes nothing.
        let r = c.update_one(&Filter::id("2"), &Update::new().set("project", "p")).await;
        assert!(matches!(r, Err(StoreError::Duplicate(_))), "{r:?}");
        assert_eq!(c.find_one(&Filter::id("2")).await.unwrap().unwrap()["project"], "q");
        app.stop().await;
    }
}

backend_test! {
    async fn conditional_update(app) {
        let c = app.backend.collection("conf_cond");
        c.insert(doc(json!({"id": "p", "version": 1, "status": "planning"}))).await.unwrap();
        let at_v1 = Filter::id("p").and(Filter::eq("version", 1));
        assert!(c.replace_one(&at_v1, doc(json!({"id": "p", "version": 2, "status": "executing"}))).await.unwrap());
        // A writer still holding version 1 loses and overwrites nothing.
        assert!(!c.replace_one(&at_v1, doc(json!({"id": "p", "version": 2, "status": "cancel"}))).await.unwrap());
        assert_eq!(c.find_one(&Filter::id("p")).await.unwrap().unwrap()["status"], "executing");
        // 20 racing transitions from the same state: exactly one wins.
        c.insert(doc(json!({"id": "q", "status": "waiting"}))).await.unwrap();
        let wins = race(20, &c, |c, i| async move {
            c.find_one_and_update(&Filter::id("q").and(Filter::eq("status", "waiting")), &[], &Update::new().set("status", "running").set("owner", i)).await.unwrap().is_some()
        }).await;
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
        app.stop().await;
    }
}

backend_test! {
    async fn counters_are_atomic(app) {
        let seq = Sequences::new(app.backend.as_ref());
        let got = race(50, &seq, |seq, _| async move { seq.next("conf_counter").await.unwrap() }).await;
        assert_eq!(got.into_iter().collect::<HashSet<i64>>(), (1..=50).collect::<HashSet<i64>>());
        assert_eq!(seq.next("other").await.unwrap(), 1);
        app.stop().await;
    }
}

backend_test! {
    async fn leases_have_one_holder(app) {
        let leases = Leases::new(app.backend.as_ref());
        let claims = race(50, &leases, |leases, i| async move {
            leases.claim("conf_lease", &format!("owner-{i}"), Duration::from_secs(30)).await.unwrap().then_some(i)
        }).await;
        let winners: Vec<i64> = claims.into_iter().flatten().collect();
        assert_eq!(winners.len(), 1, "{winners:?}");
        let owner = format!("owner-{}", winners[0]);
        assert!(leases.claim("conf_lease", &owner, Duration::from_secs(30)).await.unwrap(), "the holder renews");
        assert!(!leases.claim("conf_lease", "someone", Duration::from_secs(30)).await.unwrap());
        leases.release("conf_lease", &owner).await.unwrap();
        assert!(leases.claim("conf_lease", "someone", Duration::from_millis(1)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(leases.claim("conf_lease", "third", Duration::from_secs(30)).await.unwrap(), "an expired lease can be taken");
        app.stop().await;
    }
}
