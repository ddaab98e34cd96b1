-- Optional, applied once by an operator (the job itself never alters the schema):
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/keep-completed.sql
-- Safe to apply again (CREATE OR REPLACE, DROP TRIGGER IF EXISTS); remove with
--   DROP TRIGGER IF EXISTS choreography_tasks_keep_completed ON choreography_tasks;
--   DROP FUNCTION IF EXISTS choreography_tasks_keep_completed();
--
-- Why: the backend saves its whole in-memory row (Django's save(), every column) after
-- `run_job`'s operation returns, and that operation returns when the execution has
-- *ended*. A job quicker than that wait has already written `completed`; the backend's
-- save would put back `started` / `video_assembly` and the row would say `started` for
-- ever while the video sits in storage. After three such waits it saves `failed` "Job
-- submission failed" the same way. See docs/BACKEND.md.
--
-- What it does: an UPDATE of a `completed` row that would give it another status keeps
-- the row's status, progress, stage, message, result and error as they are; the rest of
-- that UPDATE still applies (job_execution_name, updated_at, ...). Rows that are not
-- completed are untouched by it: a cancel (running -> failed) and a relaunch
-- (failed -> started) go through as before.
--
-- On purpose, to reopen a completed task by hand:
--   BEGIN; SET LOCAL blueprint_runner.reopen_completed = 'on'; UPDATE ...; COMMIT;

CREATE OR REPLACE FUNCTION choreography_tasks_keep_completed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'completed'
       AND NEW.status IS DISTINCT FROM 'completed'
       AND coalesce(current_setting('blueprint_runner.reopen_completed', true), '') <> 'on' THEN
        NEW.status := OLD.status;
        NEW.progress := OLD.progress;
        NEW.stage := OLD.stage;
        NEW.message := OLD.message;
        NEW.result := OLD.result;
        NEW.error := OLD.error;
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS choreography_tasks_keep_completed ON choreography_tasks;
CREATE TRIGGER choreography_tasks_keep_completed
    BEFORE UPDATE ON choreography_tasks
    FOR EACH ROW EXECUTE FUNCTION choreography_tasks_keep_completed();
