// Module resolve hook of node_worker.mjs (registered with `module.register`): a bare specifier
// (`@aws-sdk/client-s3`, `uuid`) that an ES module cannot resolve from its own folder's
// node_modules is looked up in the worker's module folders (NODE_PATH: the function's build, its
// layers, the AWS SDK), as Lambda resolves ES-module imports from its layers and runtime SDK.
// `require` reads NODE_PATH itself; Node never does for `import`.

import path from "node:path";
import { pathToFileURL } from "node:url";

let parents = [];

export function initialize(data) {
  // a file URL inside each folder's parent: resolution from there looks in <folder> itself
  parents = (data?.paths || []).map((folder) => pathToFileURL(path.join(path.dirname(folder), "[tidings-resolve].mjs")).href);
}

function isBare(specifier) {
  return !/^(?:[a-z][a-z0-9+.-]*:|\/|\.\.?(?:\/|$)|#)/i.test(specifier);
}

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    if (error?.code !== "ERR_MODULE_NOT_FOUND" || !isBare(specifier)) throw error;
    for (const parentURL of parents) {
      try {
        return await nextResolve(specifier, { ...context, parentURL });
      } catch (retryError) {
        if (retryError?.code !== "ERR_MODULE_NOT_FOUND") throw retryError;
      }
    }
    throw error;
  }
}
