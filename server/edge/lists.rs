//! The IP rules as each instance holds them: the platform's deny and allow networks (with the
//! configured `edge.bans.allow`), and each tenant's. Rebuilt from the database every sync round.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::db::ip_rules::IpRule;
use crate::domain::{RuleAction, TenantId, parse_cidr};

#[derive(Default)]
struct Nets {
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
}

#[derive(Default)]
pub struct Lists {
    platform: Nets,
    tenants: HashMap<String, Nets>,
}

fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

impl Lists {
    pub fn build(rules: &[IpRule], never_ban: &[IpNet]) -> Lists {
        let mut lists = Lists { platform: Nets { deny: Vec::new(), allow: never_ban.to_vec() }, tenants: HashMap::new() };
        for rule in rules {
            let Some(net) = parse_cidr(&rule.cidr) else { continue };
            let nets = match &rule.tenant_id {
                Some(t) => lists.tenants.entry(t.clone()).or_default(),
                None => &mut lists.platform,
            };
            match rule.action {
                RuleAction::Deny => nets.deny.push(net),
                RuleAction::Allow => nets.allow.push(net),
            }
        }
        lists
    }

    /// A platform `deny` rule covers `ip` (and no platform `allow` rule does: allow wins).
    pub fn platform_denies(&self, ip: IpAddr) -> bool {
        contains(&self.platform.deny, ip) && !contains(&self.platform.allow, ip)
    }

    /// Platform `allow` rules and `edge.bans.allow`: never banned.
    pub fn never_banned(&self, ip: IpAddr) -> bool {
        contains(&self.platform.allow, ip)
    }

    /// The tenant refuses `ip`: one of its `deny` rules covers it, or it has `allow` rules and
    /// none covers it. An unknown address (no peer) is refused by a tenant with `allow` rules.
    pub fn tenant_refuses(&self, tenant: &TenantId, ip: Option<IpAddr>) -> bool {
        let Some(nets) = self.tenants.get(tenant.as_str()) else { return false };
        match ip {
            Some(ip) => contains(&nets.deny, ip) || (!nets.allow.is_empty() && !contains(&nets.allow, ip)),
            None => !nets.allow.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(tenant: Option<&str>, cidr: &str, action: RuleAction) -> IpRule {
        IpRule {
            id: "ipr_x".into(),
            tenant_id: tenant.map(str::to_owned),
            cidr: cidr.into(),
            action,
            note: String::new(),
            created_by: "test".into(),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn platform_and_tenant_rules_apply_where_they_belong() {
        let t = TenantId::from_trusted("ten_a".into());
        let other = TenantId::from_trusted("ten_b".into());
        let lists = Lists::build(
            &[
                rule(None, "203.0.113.0/24", RuleAction::Deny),
                rule(None, "203.0.113.7", RuleAction::Allow),
                rule(Some("ten_a"), "198.51.100.0/24", RuleAction::Allow),
                rule(Some("ten_a"), "198.51.100.9/32", RuleAction::Deny),
            ],
            &[parse_cidr("127.0.0.0/8").unwrap()],
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(lists.platform_denies(ip("203.0.113.5")));
        assert!(!lists.platform_denies(ip("203.0.113.7")), "allow wins");
        assert!(lists.never_banned(ip("127.0.0.1")) && lists.never_banned(ip("203.0.113.7")));
        assert!(!lists.tenant_refuses(&t, Some(ip("198.51.100.1"))));
        assert!(lists.tenant_refuses(&t, Some(ip("198.51.100.9"))), "deny inside allow");
        assert!(lists.tenant_refuses(&t, Some(ip("192.0.2.1"))), "outside the tenant's allow list");
        assert!(lists.tenant_refuses(&t, None));
        assert!(!lists.tenant_refuses(&other, Some(ip("192.0.2.1"))), "another tenant has no rules");
    }
}
