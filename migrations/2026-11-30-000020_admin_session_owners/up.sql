-- Ending every session of one admin (logout everywhere, password change, disabling the admin)
-- looks sessions up by their owner.
CREATE INDEX admin_sessions_admin_id_idx ON admin_sessions (admin_id) WHERE admin_id IS NOT NULL;
CREATE INDEX admin_sessions_operator_id_idx ON admin_sessions (operator_id) WHERE operator_id IS NOT NULL;
