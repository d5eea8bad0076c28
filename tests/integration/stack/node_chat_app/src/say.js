// Says a line to everyone in the room through the management API of the API the message came
// from: its endpoint is https://{domainName}/{stage}, taken from the event.
import {
  ApiGatewayManagementApiClient,
  GoneException,
  PostToConnectionCommand,
} from "@aws-sdk/client-apigatewaymanagementapi";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DeleteCommand, DynamoDBDocumentClient, ScanCommand } from "@aws-sdk/lib-dynamodb";

const documents = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const table = process.env.ROOM_TABLE;

export const handler = async (event) => {
  const { domainName, stage, connectionId } = event.requestContext;
  const management = new ApiGatewayManagementApiClient({ endpoint: `https://${domainName}/${stage}` });
  const { text } = JSON.parse(event.body);
  const { Items: members = [] } = await documents.send(new ScanCommand({ TableName: table }));
  const from = members.find((member) => member.connectionId === connectionId)?.name ?? "someone";
  const line = JSON.stringify({ from, text });
  await Promise.all(
    members.map(async (member) => {
      try {
        await management.send(new PostToConnectionCommand({ ConnectionId: member.connectionId, Data: line }));
      } catch (error) {
        if (!(error instanceof GoneException)) throw error;
        await documents.send(new DeleteCommand({ TableName: table, Key: { connectionId: member.connectionId } }));
      }
    }),
  );
  console.log(`${from} said ${text} to ${members.length}`);
  return { statusCode: 200 };
};
