declare module "async-exit-hook" {
  interface AsyncExitHook {
    (hook: (done: () => void) => void): void
    unhookEvent(event: string): void
    hookedEvents(): Array<string>
  }
  const asyncExitHook: AsyncExitHook
  export default asyncExitHook
}
