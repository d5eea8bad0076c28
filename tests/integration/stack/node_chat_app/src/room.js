// Joining and leaving the room: one item per open connection.
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DeleteCommand, DynamoDBDocumentClient, PutCommand } from "@aws-sdk/lib-dynamodb";

const documents = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const table = process.env.ROOM_TABLE;

export const join = async (event) => {
  const { connectionId, connectedAt } = event.requestContext;
  const name = event.queryStringParameters?.name ?? "anonymous";
  await documents.send(new PutCommand({ TableName: table, Item: { connectionId, name, connectedAt } }));
  console.log(`${name} joined as ${connectionId}`);
  return { statusCode: 200 };
};

export const leave = async (event) => {
  await documents.send(new DeleteCommand({ TableName: table, Key: { connectionId: event.requestContext.connectionId } }));
  return { statusCode: 200 };
};
