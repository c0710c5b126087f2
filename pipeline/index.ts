export { buildCli } from './cli.js';
export { packageInfo, type PackageInfo } from './packageInfo.js';
