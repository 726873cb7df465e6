//! The dashboard's session cookie name and the sign-out page, on both backends: a `Secure`
//! cookie is `__Host-zadig_session` (and only that name is a session on a secure request),
//! plain http keeps `zadig_session`; `GET /ui/logout` is a page whose button posts the
//! sign-out form, and only the POST ends the session.

use reqwest::StatusCode;

use crate::backend_test;
use crate::harness::{ADMIN_TOKEN, Kind, TestApp};
use crate::kind_test;
use crate::ui::{FormBody, Page, Visitor, csrf_of, no_redirects, page_of};

/// Sign in over "TLS" (a proxy's `X-Forwarded-Proto: https`, or `ui_cookie_secure = always`).
async fn secure_sign_in(app: &TestApp, forwarded: bool) -> Page {
    let mut req = no_redirects()
        .post(app.url("/ui/login"))
        .form_body(&[("token", ADMIN_TOKEN), ("next", "/ui/plans")]);
    if forwarded {
        req = req.header("x-forwarded-proto", "https");
    }
    page_of(req.send().await.unwrap()).await
}

/// GET `path` with `cookie`, over "TLS" when `https`.
async fn get_with(app: &TestApp, path: &str, cookie: &str, https: bool) -> Page {
    let mut req = no_redirects().get(app.url(path)).header("cookie", cookie);
    if https {
        req = req.header("x-forwarded-proto", "https");
    }
    page_of(req.send().await.unwrap()).await
}

backend_test! {
    async fn secure_cookie_has_the_host_prefix(app) {
        let p = secure_sign_in(&app, true).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.text);
        let c = &p.set_cookie;
        assert!(c.starts_with("__Host-zadig_session=") && c.contains("; Path=/;") && c.ends_with("; Secure"), "{c}");
        assert!(!c.contains("Domain"), "{c}");
        let cookie = c.split(';').next().unwrap().to_string();
        assert_eq!(get_with(&app, "/ui/plans", &cookie, true).await.status, StatusCode::OK);
        // The same value under the plain name is no session on a secure request (anyone could
        // have planted it), nor is the prefixed cookie one on plain http.
        let value = cookie.trim_start_matches("__Host-zadig_session=");
        let plain = format!("zadig_session={value}");
        assert_eq!(get_with(&app, "/ui/plans", &plain, true).await.status, StatusCode::SEE_OTHER);
        assert_eq!(get_with(&app, "/ui/plans", &cookie, false).await.status, StatusCode::SEE_OTHER);

        // Signing out over TLS clears the prefixed cookie.
        let page = get_with(&app, "/ui/logout", &cookie, true).await;
        let out = no_redirects().post(app.url("/ui/logout")).header("cookie", &cookie)
            .header("x-forwarded-proto", "https").header("origin", &app.base)
            .form_body(&[("csrf", csrf_of(&page.text).as_str())]).send().await.unwrap();
        let out = page_of(out).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.text);
        assert!(out.set_cookie.starts_with("__Host-zadig_session=;") && out.set_cookie.contains("Max-Age=0"), "{}", out.set_cookie);

        // Plain http keeps the plain name (Visitor::sign_in checks it).
        let v = Visitor::sign_in(&app, ADMIN_TOKEN).await;
        assert!(v.cookie.starts_with("zadig_session="), "{}", v.cookie);
        app.stop().await;
    }
}

/// `ui_cookie_secure = always`: the prefixed name on a plain-http request too.
async fn always_secure_uses_the_prefix(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| c.ui_cookie_secure = "always".into()).await
    else {
        return;
    };
    let p = secure_sign_in(&app, false).await;
    assert!(
        p.set_cookie.starts_with("__Host-zadig_session=") && p.set_cookie.ends_with("; Secure"),
        "{}",
        p.set_cookie
    );
    let cookie = p.set_cookie.split(';').next().unwrap().to_string();
    assert_eq!(
        get_with(&app, "/ui/plans", &cookie, false).await.status,
        StatusCode::OK
    );
    app.stop().await;
}
kind_test!(always_secure_uses_the_prefix);

backend_test! {
    async fn logout_page_offers_the_sign_out_form(app) {
        // Without a session: the sign-in page.
        let r = page_of(no_redirects().get(app.url("/ui/logout")).send().await.unwrap()).await;
        assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/ui/login"));

        let admin = Visitor::sign_in(&app, ADMIN_TOKEN).await;
        let p = admin.page("/ui/logout", &["Sign out", "action=\"/ui/logout\"", "method=\"post\""]).await;
        assert!(p.content_type.starts_with("text/html"), "{}", p.content_type);
        // Showing the page does not sign out.
        admin.page("/ui/plans", &["Release plans"]).await;
        // Its form posts the session's CSRF token and signs out.
        let out = admin.post("/ui/logout", &csrf_of(&p.text), &[]).await;
        assert_eq!((out.status, out.location.as_str()), (StatusCode::SEE_OTHER, "/ui/login"));
        assert_eq!(admin.get("/ui/plans").await.status, StatusCode::SEE_OTHER, "the session ended");
        app.stop().await;
    }
}

backend_test! {
    async fn a_failed_sign_in_keeps_the_browsers_session(app) {
        let admin = Visitor::sign_in(&app, ADMIN_TOKEN).await;
        let sign_in = |token: &'static str| {
            no_redirects().post(app.url("/ui/login")).header("cookie", &admin.cookie)
                .form_body(&[("token", token), ("next", "/ui/plans")]).send()
        };
        // A mistyped token signs nobody out.
        let p = page_of(sign_in("not-a-token").await.unwrap()).await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.text);
        admin.page("/ui/plans", &["Release plans"]).await;
        // A successful sign-in in this browser ends the session it had.
        let p = page_of(sign_in(ADMIN_TOKEN).await.unwrap()).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.text);
        assert_eq!(admin.get("/ui/plans").await.status, StatusCode::SEE_OTHER, "the old session ended");
        app.stop().await;
    }
}
