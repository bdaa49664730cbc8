-- Sample sales data for the demo (scripts/demo.sh): a sales team and its opportunities, as a CRM
-- export would hold them. Deterministic (no random()), with dates relative to today so that the
-- demo's filter ("closed won in the last 12 months") always selects a few dozen deals.

CREATE TABLE public.users (
    id        integer PRIMARY KEY,
    email     text NOT NULL UNIQUE,
    full_name text NOT NULL,
    team      text NOT NULL,
    region    char(4) NOT NULL,
    active    boolean NOT NULL DEFAULT true
);

INSERT INTO public.users (id, email, full_name, team, region, active) VALUES
    (1,  'alice.martin@northwind.example',   'Alice Martin',   'Enterprise', 'EMEA', true),
    (2,  'bruno.dubois@northwind.example',   'Bruno Dubois',   'Enterprise', 'EMEA', true),
    (3,  'chloe.bernard@northwind.example',  'Chloé Bernard',  'Mid-Market', 'EMEA', true),
    (4,  'david.thomas@northwind.example',   'David Thomas',   'Mid-Market', 'EMEA', true),
    (5,  'emma.robert@northwind.example',    'Emma Robert',    'SMB',        'EMEA', true),
    (6,  'farid.richard@northwind.example',  'Farid Richard',  'SMB',        'EMEA', true),
    (7,  'grace.miller@northwind.example',   'Grace Miller',   'Enterprise', 'AMER', true),
    (8,  'hugo.garcia@northwind.example',    'Hugo Garcia',    'Mid-Market', 'AMER', true),
    (9,  'ines.moreau@northwind.example',    'Inès Moreau',    'SMB',        'AMER', true),
    (10, 'jonas.weber@northwind.example',    'Jonas Weber',    'Enterprise', 'APAC', true),
    (11, 'karim.haddad@northwind.example',   'Karim Haddad',   'Mid-Market', 'APAC', true),
    (12, 'lea.petit@northwind.example',      'Léa Petit',      'SMB',        'APAC', false);

CREATE TABLE public.opportunities (
    id           bigint PRIMARY KEY,
    name         text NOT NULL,
    account      text NOT NULL,
    owner_email  text REFERENCES public.users (email),
    stage        text NOT NULL,
    amount       numeric(12,2) NOT NULL,
    currency     char(3) NOT NULL DEFAULT 'EUR',
    probability  integer NOT NULL,
    close_date   date NOT NULL,
    is_renewal   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    -- Not sent to Qobra: the mapping reports it, the registration excludes it.
    tags         text[] NOT NULL DEFAULT '{}'
);

-- 360 opportunities over the last 18 months and the next 4: closed deals closed in the past,
-- open ones expected to close soon; amounts between 2,000 and 150,000.
INSERT INTO public.opportunities
SELECT i,
       acct || ' — ' || kind,
       acct,
       (SELECT email FROM public.users WHERE id = 1 + (i * 7) % 12),
       stage,
       round(2000 + ((i * 7919) % 1480) * 100 + (i % 100) * 0.5, 2),
       (ARRAY['EUR', 'EUR', 'USD', 'GBP'])[1 + i % 4],
       CASE stage WHEN 'Closed Won' THEN 100 WHEN 'Closed Lost' THEN 0
                  WHEN 'Negotiation' THEN 80 WHEN 'Proposal' THEN 60
                  WHEN 'Qualification' THEN 30 ELSE 10 END,
       CASE WHEN stage LIKE 'Closed%' THEN current_date - (i * 37) % 540
            ELSE current_date + (i * 13) % 120 END,
       kind = 'Renewal',
       (current_date - (i * 37) % 540 - 60 - i % 90)::timestamptz + (i * 1237 % 86400) * interval '1 second',
       CASE WHEN i % 9 = 0 THEN '{strategic}'::text[] ELSE '{}' END
  FROM generate_series(1, 360) AS i,
       LATERAL (SELECT (ARRAY['Acme', 'Globex', 'Initech', 'Umbrella', 'Stark Industries',
                              'Wayne Enterprises', 'Wonka', 'Tyrell', 'Cyberdyne', 'Soylent',
                              'Hooli', 'Vandelay', 'Massive Dynamic', 'Aperture Science',
                              'Black Mesa', 'Oscorp', 'Pied Piper', 'Dunder Mifflin'])[1 + (i * 5) % 18]
                       || ' ' || (ARRAY['Corp', 'GmbH', 'SAS', 'Ltd', 'Inc'])[1 + (i * 3) % 5] AS acct,
                       (ARRAY['New business', 'Renewal', 'Upsell', 'Expansion'])[1 + (i * 11) % 4] AS kind,
                       (ARRAY['Closed Won', 'Closed Won', 'Closed Lost', 'Negotiation', 'Proposal',
                              'Qualification', 'Prospecting'])[1 + (i * 17) % 7] AS stage) AS pick;

-- One deal nobody owns yet: the user field is sent as null.
UPDATE public.opportunities SET owner_email = NULL WHERE id = 360;

ANALYZE public.users, public.opportunities;
