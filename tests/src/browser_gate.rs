//! The start of every browser test binary: enter the loopback-only
//! network namespace, find out once whether Chromium can run here, and
//! turn each test into a trial that runs, fails with the reason (when
//! browsers are required, as `scripts/test` makes them) or is skipped.

use libtest_mimic::{Failed, Trial};

use crate::{browser, netns};

pub type TestFn = fn() -> Result<(), Failed>;

/// Why this binary's tests cannot run, as found at its start.
pub struct Gate {
    /// Set when there is no private network namespace.
    pub no_netns: Option<String>,
    /// Set when there is no namespace, or no browser or its tools.
    pub no_browser: Option<String>,
    /// A missing piece fails the tests instead of skipping them.
    pub required: bool,
}

impl Gate {
    /// Enters the namespace (call it first, before any thread starts) and
    /// says on stderr what is skipped or failing, naming `binary`.
    pub fn enter(binary: &str) -> Gate {
        let no_netns = netns::enter_isolated_loopback()
            .err()
            .map(|e| format!("no private network namespace: {e:#}"));
        let no_browser = no_netns
            .clone()
            .or_else(browser::browser_unavailable_reason);
        let required = browser::browser_required();
        if let Some(why) = &no_browser {
            eprintln!(
                "{binary}: {} browser tests: {why}",
                if required { "failing" } else { "skipping" }
            );
        }
        Gate {
            no_netns,
            no_browser,
            required,
        }
    }

    /// A test that needs the browser.
    pub fn browser(&self, name: &str, f: TestFn) -> Trial {
        self.trial(name, f, self.no_browser.clone())
    }

    /// A test that cannot run while `skip` says why.
    pub fn trial(&self, name: &str, f: TestFn, skip: Option<String>) -> Trial {
        let ignored = skip.is_some() && !self.required;
        Trial::test(name, move || match skip {
            Some(why) => Err(why.into()),
            None => f(),
        })
        .with_ignored_flag(ignored)
    }
}
