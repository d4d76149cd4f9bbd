//! Diesel table definitions for migrations/. Written to match the SQL exactly (the project does not
//! depend on diesel_cli); the `schema_matches_database` test compares them with a migrated database.

diesel::table! {
    plans (id) {
        id -> Text,
        name -> Text,
        requests_per_minute -> Nullable<Int4>,
        tokens_per_minute -> Nullable<Int8>,
        audio_seconds_per_minute -> Nullable<Int4>,
        concurrent_requests -> Nullable<Int4>,
        daily_token_quota -> Nullable<Int8>,
        monthly_token_quota -> Nullable<Int8>,
        monthly_token_soft_quota -> Nullable<Int8>,
        daily_request_quota -> Nullable<Int8>,
        monthly_request_quota -> Nullable<Int8>,
        daily_audio_seconds_quota -> Nullable<Int8>,
        monthly_audio_seconds_quota -> Nullable<Int8>,
        queue_weight -> Int4,
        max_tokens_cap -> Nullable<Int4>,
        default_max_tokens -> Nullable<Int4>,
        max_prompt_chars -> Nullable<Int4>,
        max_audio_bytes -> Int8,
        allowed_models -> Array<Text>,
        entitlements -> Array<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    tenants (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        status -> Text,
        time_zone -> Text,
        plan_id -> Text,
        prompt_deny_patterns -> Array<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        disabled_at -> Nullable<Timestamptz>,
        prompt_rule_packs -> Jsonb,
        cors_origins -> Array<Text>,
    }
}

diesel::table! {
    operators (id) {
        id -> Text,
        email -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
        last_login_at -> Nullable<Timestamptz>,
        disabled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    tenant_admins (id) {
        id -> Text,
        tenant_id -> Text,
        email -> Text,
        password_hash -> Nullable<Text>,
        created_at -> Timestamptz,
        last_login_at -> Nullable<Timestamptz>,
        disabled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    admin_sessions (token_hash) {
        token_hash -> Bytea,
        operator_id -> Nullable<Text>,
        admin_id -> Nullable<Text>,
        csrf_secret -> Bytea,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        expires_at -> Timestamptz,
        source_ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    management_tokens (id) {
        id -> Text,
        operator_id -> Nullable<Text>,
        admin_id -> Nullable<Text>,
        name -> Text,
        secret_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    oauth_clients (id) {
        id -> Text,
        tenant_id -> Text,
        name -> Text,
        secret_hash -> Bytea,
        secret_expires_at -> Nullable<Timestamptz>,
        rotated_secret_hash -> Nullable<Bytea>,
        rotated_expires_at -> Nullable<Timestamptz>,
        allowed_scopes -> Array<Text>,
        ip_allowlist -> Array<Text>,
        token_ttl_seconds -> Int4,
        tokens_valid_after -> Timestamptz,
        requests_per_minute -> Nullable<Int4>,
        tokens_per_minute -> Nullable<Int8>,
        audio_seconds_per_minute -> Nullable<Int4>,
        concurrent_requests -> Nullable<Int4>,
        created_by -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        disabled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        tenant_id -> Text,
        name -> Text,
        environment -> Text,
        secret_hash -> Bytea,
        last4 -> Text,
        scopes -> Array<Text>,
        ip_allowlist -> Array<Text>,
        requests_per_minute -> Nullable<Int4>,
        tokens_per_minute -> Nullable<Int8>,
        audio_seconds_per_minute -> Nullable<Int4>,
        concurrent_requests -> Nullable<Int4>,
        created_by -> Nullable<Text>,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        rolled_from -> Nullable<Text>,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        state -> Text,
        private_key_sealed -> Bytea,
        public_jwk -> Jsonb,
        created_at -> Timestamptz,
        activated_at -> Nullable<Timestamptz>,
        retiring_at -> Nullable<Timestamptz>,
        retired_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    token_revocations (jti) {
        jti -> Text,
        tenant_id -> Text,
        client_id -> Text,
        revoked_at -> Timestamptz,
        expires_at -> Timestamptz,
        reason -> Text,
    }
}

diesel::table! {
    worker_pools (id) {
        id -> Text,
        name -> Text,
        kind -> Text,
        models -> Array<Text>,
        queue_deadline_ms -> Int4,
        max_queue_per_tenant -> Int4,
        max_queue_total -> Int4,
        batch_max_items -> Int4,
        batch_max_audio_ms -> Int4,
        batch_max_wait_ms -> Int4,
        source -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        queue_wait_target_ms -> Nullable<Int4>,
    }
}

diesel::table! {
    workers (id) {
        id -> Text,
        pool_id -> Text,
        base_url -> Text,
        api_key_sealed -> Nullable<Bytea>,
        slots -> Int4,
        state -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    jobs (id) {
        id -> Text,
        tenant_id -> Text,
        credential_id -> Text,
        kind -> Text,
        status -> Text,
        idempotency_key -> Nullable<Text>,
        model -> Text,
        params -> Jsonb,
        audio_path -> Nullable<Text>,
        audio_duration_ms -> Nullable<Int8>,
        chunks_total -> Int4,
        chunks_done -> Int4,
        result -> Nullable<Jsonb>,
        error -> Nullable<Jsonb>,
        attempts -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    usage_rollups (minute, tenant_id, credential_id, model) {
        minute -> Timestamptz,
        tenant_id -> Text,
        credential_id -> Text,
        model -> Text,
        requests -> Int8,
        errors -> Int8,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        audio_ms -> Int8,
        queue_wait_ms_sum -> Int8,
        latency_ms_sum -> Int8,
    }
}

diesel::table! {
    usage_rollups_hourly (hour, tenant_id, credential_id, model) {
        hour -> Timestamptz,
        tenant_id -> Text,
        credential_id -> Text,
        model -> Text,
        requests -> Int8,
        errors -> Int8,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        audio_ms -> Int8,
        queue_wait_ms_sum -> Int8,
        latency_ms_sum -> Int8,
    }
}

diesel::table! {
    usage_events (occurred_at, id) {
        occurred_at -> Timestamptz,
        id -> Uuid,
        tenant_id -> Text,
        credential_id -> Text,
        model -> Text,
        status -> Int2,
        prompt_tokens -> Int4,
        completion_tokens -> Int4,
        audio_ms -> Int4,
        queue_wait_ms -> Int4,
        latency_ms -> Int4,
    }
}

diesel::table! {
    usage_journal_marks (journal_id) {
        journal_id -> Text,
        applied_segment -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    audit_events (occurred_at, id) {
        occurred_at -> Timestamptz,
        id -> Uuid,
        tenant_id -> Nullable<Text>,
        actor_kind -> Text,
        actor_id -> Nullable<Text>,
        action -> Text,
        target_kind -> Nullable<Text>,
        target_id -> Nullable<Text>,
        outcome -> Text,
        source_ip -> Nullable<Text>,
        request_id -> Nullable<Text>,
        details -> Jsonb,
    }
}

diesel::table! {
    alert_rules (id) {
        id -> Text,
        tenant_id -> Nullable<Text>,
        kind -> Text,
        params -> Jsonb,
        recipients -> Array<Text>,
        enabled -> Bool,
        cooldown_seconds -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    alert_outbox (id) {
        id -> Int8,
        tenant_id -> Nullable<Text>,
        rule_id -> Nullable<Text>,
        kind -> Text,
        dedup_key -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
        available_at -> Timestamptz,
        attempts -> Int4,
        sent_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        failed_at -> Nullable<Timestamptz>,
        severity -> Text,
    }
}

diesel::table! {
    alert_recipients (id) {
        id -> Text,
        email -> Text,
        tenant_id -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    alert_silences (id) {
        id -> Text,
        rule -> Nullable<Text>,
        object -> Nullable<Text>,
        until -> Timestamptz,
        reason -> Text,
        created_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    alert_states (key) {
        key -> Text,
        rule -> Text,
        tenant_id -> Nullable<Text>,
        severity -> Text,
        started_at -> Timestamptz,
        last_notified_at -> Timestamptz,
        notifications -> Int4,
        resolved_at -> Nullable<Timestamptz>,
        payload -> Jsonb,
    }
}

diesel::table! {
    ip_rules (id) {
        id -> Text,
        tenant_id -> Nullable<Text>,
        cidr -> Text,
        action -> Text,
        note -> Text,
        created_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ip_bans (id) {
        id -> Int8,
        ip -> Text,
        reason -> Text,
        level -> Int4,
        observed -> Int8,
        started_at -> Timestamptz,
        until -> Timestamptz,
        lifted_at -> Nullable<Timestamptz>,
        lifted_by -> Nullable<Text>,
    }
}

diesel::joinable!(tenants -> plans (plan_id));
diesel::joinable!(tenant_admins -> tenants (tenant_id));
diesel::joinable!(oauth_clients -> tenants (tenant_id));
diesel::joinable!(api_keys -> tenants (tenant_id));
diesel::joinable!(workers -> worker_pools (pool_id));
diesel::joinable!(jobs -> tenants (tenant_id));

diesel::allow_tables_to_appear_in_same_query!(
    plans,
    tenants,
    operators,
    tenant_admins,
    admin_sessions,
    management_tokens,
    oauth_clients,
    api_keys,
    signing_keys,
    token_revocations,
    worker_pools,
    workers,
    jobs,
    usage_rollups,
    usage_events,
    usage_journal_marks,
    usage_rollups_hourly,
    audit_events,
    alert_rules,
    alert_outbox,
    alert_recipients,
    alert_silences,
    alert_states,
    ip_rules,
    ip_bans,
);
