-- Nodes remember their recipient lookups (postgres/lookups.rs) and forget them when the
-- directory changes: every statement that changes where an address goes announces it on the
-- `tern_directory` channel, delivered at its commit to every node (duplicates in one
-- transaction are folded into one). Accounts announce additions, removals and changes of
-- address or quota only: deliveries update `used` in every batch, and must not wipe every
-- node's lookups each time.
CREATE FUNCTION directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tern_directory', '');
    RETURN NULL;
END $$;
CREATE TRIGGER domains_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON domains
    FOR EACH STATEMENT EXECUTE FUNCTION directory_changed();
CREATE TRIGGER accounts_added_or_removed AFTER INSERT OR DELETE OR TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION directory_changed();
CREATE TRIGGER accounts_readdressed AFTER UPDATE OF address, quota, domain_id ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION directory_changed();
CREATE TRIGGER aliases_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON aliases
    FOR EACH STATEMENT EXECUTE FUNCTION directory_changed();
CREATE TRIGGER forwards_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON forwards
    FOR EACH STATEMENT EXECUTE FUNCTION directory_changed();
