//! The Microsoft clouds a site can live in. Each names its own sign-in,
//! Graph and Teams hosts, and the hosts allowed to frame the Teams tab.
//! GCC (moderate) tenants use the commercial cloud's hosts.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cloud {
    /// Commercial and GCC.
    #[default]
    Commercial,
    GccHigh,
    Dod,
}

/// Where one cloud's services are. Hosts are bare names unless the field
/// says it is a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudHosts {
    /// Entra sign-in, as a URL: token endpoint, v2 issuer, JWKS.
    pub login_url: &'static str,
    /// Microsoft Graph, as a URL.
    pub graph_url: &'static str,
    /// The Teams web client, where deep links point.
    pub teams_host: &'static str,
    /// `frame-ancestors` sources for the tab page: Teams, Outlook and the
    /// Microsoft 365 app of this cloud.
    pub frame_ancestors: &'static [&'static str],
}

/// v1 access tokens name this issuer in every cloud (`{tid}` substituted).
pub const V1_ISSUER_TEMPLATE: &str = "https://sts.windows.net/{tid}/";

const COMMERCIAL: CloudHosts = CloudHosts {
    login_url: "https://login.microsoftonline.com",
    graph_url: "https://graph.microsoft.com",
    teams_host: "teams.microsoft.com",
    frame_ancestors: &[
        "*.cloud.microsoft",
        "teams.microsoft.com",
        "*.teams.microsoft.com",
        "*.microsoft365.com",
        "*.office.com",
        "outlook.office.com",
        "outlook.office365.com",
        "outlook-sdf.office.com",
        "outlook-sdf.office365.com",
    ],
};

const GCC_HIGH: CloudHosts = CloudHosts {
    login_url: "https://login.microsoftonline.us",
    graph_url: "https://graph.microsoft.us",
    teams_host: "gov.teams.microsoft.us",
    frame_ancestors: &[
        "*.cloud.microsoft",
        "gov.teams.microsoft.us",
        "*.gov.teams.microsoft.us",
        "*.office365.us",
        "outlook.office365.us",
    ],
};

const DOD: CloudHosts = CloudHosts {
    login_url: "https://login.microsoftonline.us",
    graph_url: "https://dod-graph.microsoft.us",
    teams_host: "dod.teams.microsoft.us",
    frame_ancestors: &[
        "*.cloud.microsoft",
        "dod.teams.microsoft.us",
        "*.dod.teams.microsoft.us",
        "*.dod.online.office365.us",
        "outlook-dod.office365.us",
    ],
};

impl Cloud {
    pub fn hosts(self) -> &'static CloudHosts {
        match self {
            Cloud::Commercial => &COMMERCIAL,
            Cloud::GccHigh => &GCC_HIGH,
            Cloud::Dod => &DOD,
        }
    }

    /// The keys every tenant of this cloud signs with.
    pub fn jwks_url(self) -> String {
        format!("{}/common/discovery/v2.0/keys", self.hosts().login_url)
    }

    /// The issuer of a v2 access token from tenant `tid`.
    pub fn v2_issuer(self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.hosts().login_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cloud_names_its_own_hosts() {
        let t = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        for (cloud, graph, teams, issuer) in [
            (
                Cloud::Commercial,
                "https://graph.microsoft.com",
                "teams.microsoft.com",
                "https://login.microsoftonline.com/",
            ),
            (
                Cloud::GccHigh,
                "https://graph.microsoft.us",
                "gov.teams.microsoft.us",
                "https://login.microsoftonline.us/",
            ),
            (
                Cloud::Dod,
                "https://dod-graph.microsoft.us",
                "dod.teams.microsoft.us",
                "https://login.microsoftonline.us/",
            ),
        ] {
            let h = cloud.hosts();
            assert_eq!((h.graph_url, h.teams_host), (graph, teams), "{cloud:?}");
            assert_eq!(cloud.v2_issuer(t), format!("{issuer}{t}/v2.0"));
            assert!(cloud.jwks_url().starts_with(issuer), "{cloud:?}");
            // Every cloud's tab is framed by the new shared domain and by
            // its own Teams, and by nothing of another cloud.
            assert!(h.frame_ancestors.contains(&"*.cloud.microsoft"));
            assert!(h.frame_ancestors.contains(&teams));
            let foreign = if cloud == Cloud::Commercial {
                ".us"
            } else {
                ".com"
            };
            assert!(
                !h.frame_ancestors.iter().any(|a| a.ends_with(foreign)),
                "{cloud:?}: {:?}",
                h.frame_ancestors
            );
        }
    }
}
