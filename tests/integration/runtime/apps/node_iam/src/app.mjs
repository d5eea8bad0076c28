// Written for the tests: the SDK v3 client takes its endpoint, region and credentials from the
// environment the local stack gives the function, as on Lambda.
import { DynamoDBClient, GetItemCommand, PutItemCommand } from "@aws-sdk/client-dynamodb";

const client = new DynamoDBClient({});
const table = process.env.ITEMS_TABLE;

async function outcome(command) {
  try {
    const reply = await client.send(command);
    return { status: reply.$metadata.httpStatusCode };
  } catch (error) {
    return { status: error.$metadata?.httpStatusCode, code: error.name, message: error.message };
  }
}

export const handler = async () => ({
  endpoint: process.env.AWS_ENDPOINT_URL,
  put: await outcome(new PutItemCommand({ TableName: table, Item: { pk: { S: "a" } } })),
  get: await outcome(new GetItemCommand({ TableName: table, Key: { pk: { S: "a" } } })),
});
