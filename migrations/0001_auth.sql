-- Auth control plane: principals, roles, API tokens, OIDC providers and provisioning
-- rules (spec/auth.md §1.4, with the authkit_ prefix shortened to auth_).

CREATE TABLE auth_principals (
  id text PRIMARY KEY CHECK (id <> ''),
  kind text NOT NULL CHECK (kind IN ('user', 'service')),
  display_name text NOT NULL,
  attributes jsonb NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth_roles (
  id text PRIMARY KEY CHECK (id <> ''),
  display_name text NOT NULL,
  description text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth_role_actions (
  role_id text NOT NULL REFERENCES auth_roles (id) ON DELETE RESTRICT,
  action text NOT NULL CHECK (action <> ''),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (role_id, action)
);

-- The two built-in roles are data, fixed here; the API never creates others.
INSERT INTO auth_roles (id, display_name, description) VALUES
  ('content-writer', 'Content writer', 'Can write imgsrv content.'),
  ('auth-manager', 'Auth manager', 'Can manage imgsrv authentication policy.');
INSERT INTO auth_role_actions (role_id, action) VALUES
  ('content-writer', 'content.write'),
  ('auth-manager', 'auth.manage');

CREATE TABLE auth_principal_roles (
  principal_id text NOT NULL REFERENCES auth_principals (id) ON DELETE RESTRICT,
  role_id text NOT NULL REFERENCES auth_roles (id) ON DELETE RESTRICT,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (principal_id, role_id)
);
CREATE INDEX auth_principal_roles_role_idx ON auth_principal_roles (role_id);

-- Links a credential identity (an API token id, or an OIDC issuer + subject) to a principal.
CREATE TABLE auth_external_identities (
  provider text NOT NULL CHECK (provider <> ''),
  subject text NOT NULL CHECK (subject <> ''),
  principal_id text NOT NULL REFERENCES auth_principals (id) ON DELETE RESTRICT,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, subject)
);
CREATE INDEX auth_external_identities_principal_idx ON auth_external_identities (principal_id);

-- Only SHA-256(secret) is stored; the plaintext is shown once, at issue time.
CREATE TABLE auth_api_tokens (
  id text PRIMARY KEY CHECK (id ~ '^[A-Z2-7]{26}$'),
  principal_id text NOT NULL REFERENCES auth_principals (id) ON DELETE RESTRICT,
  name text NOT NULL,
  secret_hash bytea NOT NULL CHECK (octet_length(secret_hash) = 32),
  expires_at timestamptz NOT NULL,
  last_used_at timestamptz NULL,
  revoked_at timestamptz NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_api_tokens_principal_idx ON auth_api_tokens (principal_id);

CREATE TABLE auth_oidc_providers (
  issuer text PRIMARY KEY CHECK (issuer <> ''),
  jwks_url text NOT NULL CHECK (jwks_url <> ''),
  audiences text[] NOT NULL CHECK (cardinality(audiences) > 0),
  supported_signing_algorithms text[] NOT NULL DEFAULT '{}',
  forwarded_claims jsonb NOT NULL DEFAULT '[]',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth_provisioning_rules (
  id text PRIMARY KEY CHECK (id <> ''),
  display_name text NOT NULL,
  provider text NOT NULL REFERENCES auth_oidc_providers (issuer) ON DELETE RESTRICT,
  audience text NOT NULL CHECK (audience <> ''),
  forwarded_claims text[] NOT NULL DEFAULT '{}',
  condition text NOT NULL CHECK (condition <> ''),
  enabled boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_provisioning_rules_provider_idx ON auth_provisioning_rules (provider);

CREATE TABLE auth_provisioning_rule_roles (
  rule_id text NOT NULL REFERENCES auth_provisioning_rules (id) ON DELETE CASCADE,
  role_id text NOT NULL REFERENCES auth_roles (id) ON DELETE RESTRICT,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (rule_id, role_id)
);
CREATE INDEX auth_provisioning_rule_roles_role_idx ON auth_provisioning_rule_roles (role_id);

-- OIDC-provisioned principals are found by their provenance attributes: the resolver
-- looks up (provider, subject) for an identity whose claims changed, reconciliation
-- looks up the provisioning rule id.
CREATE INDEX auth_principals_oidc_subject_idx
  ON auth_principals ((attributes->>'provider'), (attributes->>'subject'))
  WHERE attributes ? 'provisioning_rule_id';
CREATE INDEX auth_principals_provisioning_rule_idx
  ON auth_principals ((attributes->>'provisioning_rule_id'))
  WHERE attributes ? 'provisioning_rule_id';
