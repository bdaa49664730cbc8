-- Describes a relation for registration: kind, schema-qualified name quoted by Postgres, and its live columns with
-- the base type behind any domain. $1 = the relation's OID. Returns one jsonb (or no row).
WITH RECURSIVE cols AS (
    SELECT a.attnum, a.attname, a.atttypid, a.atttypmod, a.attnotnull
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
), base(attnum, typ, depth) AS (
    SELECT attnum, atttypid, 0 FROM cols
    UNION ALL
    SELECT b.attnum, t.typbasetype, b.depth OPERATOR(pg_catalog.+) 1
      FROM base b JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) b.typ
     WHERE t.typtype OPERATOR(pg_catalog.=) 'd'
)
SELECT pg_catalog.jsonb_build_object(
         'oid', c.oid::pg_catalog.int8,
         'name', pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname),
         'relkind', c.relkind::pg_catalog.text,
         'columns', COALESCE((
             SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                      'attnum', col.attnum,
                      'name', col.attname::pg_catalog.text,
                      'type_name', pg_catalog.format_type(col.atttypid, col.atttypmod),
                      'base_type_oid', (SELECT b.typ::pg_catalog.int8 FROM base b
                                         WHERE b.attnum OPERATOR(pg_catalog.=) col.attnum
                                         ORDER BY b.depth DESC LIMIT 1),
                      'not_null', col.attnotnull) ORDER BY col.attnum)
               FROM cols col), '[]'::pg_catalog.jsonb))
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE c.oid OPERATOR(pg_catalog.=) $1
