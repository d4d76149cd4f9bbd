DROP TABLE ip_bans;
DROP TABLE ip_rules;
