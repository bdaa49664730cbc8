-- Every object of the qobra_sync extension as (kind, name, definition) rows, free of OIDs and
-- attnums: two databases whose rows are equal have the same catalog for the extension. Used to
-- compare an upgraded installation with a fresh one.
WITH ext AS (SELECT oid, extconfig, extcondition FROM pg_extension WHERE extname = 'qobra_sync'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
)
SELECT 'member' AS kind, pg_describe_object(classid, objid, 0) AS name, '' AS definition FROM members
UNION ALL
SELECT 'function', p.oid::regprocedure::text,
       concat_ws(' | ', pg_get_function_result(p.oid), pg_get_function_arguments(p.oid), p.prosecdef,
                 p.provolatile, p.proisstrict, p.proconfig::text, p.prosrc, p.probin, p.proacl::text,
                 obj_description(p.oid, 'pg_proc'))
  FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
UNION ALL
SELECT 'relation', c.oid::regclass::text,
       concat_ws(' | ', c.relkind, c.reloptions::text, c.relrowsecurity, c.relforcerowsecurity,
                 c.relacl::text, obj_description(c.oid, 'pg_class'),
                 CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END)
  FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
UNION ALL
SELECT 'columns', c.oid::regclass::text,
       string_agg(concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                            pg_get_expr(ad.adbin, ad.adrelid), a.attacl::text,
                            col_description(c.oid, a.attnum)), ', ' ORDER BY a.attnum)
  FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 GROUP BY c.oid
UNION ALL
SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = k.conrelid
UNION ALL
SELECT 'index', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = i.indrelid
UNION ALL
SELECT 'policy', p.polrelid::regclass::text || '.' || p.polname,
       concat_ws(' | ', p.polcmd, p.polpermissive, p.polroles::regrole[]::text,
                 pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
  FROM pg_policy p JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = p.polrelid
UNION ALL
SELECT 'trigger', t.tgrelid::regclass::text || '.' || t.tgname, pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = t.tgrelid
 WHERE NOT t.tgisinternal  -- those of foreign keys, named by OID, are the constraints above
UNION ALL
SELECT 'config dump', cfg::regclass::text, coalesce(ext.extcondition[i], '')
  FROM ext, unnest(ext.extconfig) WITH ORDINALITY AS u(cfg, i)
UNION ALL
SELECT 'schema', n.nspname, concat_ws(' | ', n.nspacl::text, obj_description(n.oid, 'pg_namespace'))
  FROM pg_namespace n WHERE n.nspname = 'qobra_sync'
UNION ALL
SELECT 'role', r.rolname, concat_ws(' | ', r.rolcanlogin, shobj_description(r.oid, 'pg_authid'))
  FROM pg_roles r WHERE r.rolname = 'qobra_sync_operator'
ORDER BY 1, 2, 3
