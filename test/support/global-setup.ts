// Filled in by the spine: starts one embedded PostgreSQL and one S3 server per test run.
export default async function setup() {
  return async () => {}
}
